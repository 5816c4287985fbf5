#include "devicegate/log.hpp"

#include <cstdio>

namespace devicegate {

namespace {

std::string escaped(std::string_view text, std::size_t max_len, bool escape_space) {
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
        } else if ((c > 0x20 && c < 0x7f) || (c == 0x20 && !escape_space)) {
            out += static_cast<char>(c);
        } else {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

}  // namespace

std::string log_safe(std::string_view text, std::size_t max_len) { return escaped(text, max_len, false); }

std::string log_word(std::string_view text, std::size_t max_len) { return escaped(text, max_len, true); }

std::string iso_utc(std::time_t t) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char out[32];
    std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

}  // namespace devicegate
