#include "devicegate/device_id.hpp"

namespace devicegate {

namespace {
bool is_alnum(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
}  // namespace

bool is_safe_device_id(std::string_view id) noexcept {
    if (id.empty() || id.size() > max_device_id_length || !is_alnum(id.front())) return false;
    for (char c : id) {
        if (!is_alnum(c) && c != '.' && c != '_' && c != ':' && c != '@' && c != '-') return false;
    }
    return true;
}

}  // namespace devicegate
