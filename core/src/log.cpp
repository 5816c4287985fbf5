#include "devicegate/log.hpp"

#include <cstdio>

namespace devicegate {

std::string log_safe(std::string_view text, std::size_t max_len) {
    std::string out;
    out.reserve(text.size() < max_len ? text.size() : max_len);
    for (unsigned char c : text) {
        if (out.size() >= max_len) {
            out += "...";
            break;
        }
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

}  // namespace devicegate
