#include "devicegate/duration.hpp"

#include <charconv>
#include <limits>
#include <string_view>

namespace devicegate {

std::chrono::milliseconds parse_duration(const std::string& text) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end == text.data()) throw std::invalid_argument("not a duration");
    std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    std::uint64_t factor = 0;
    if (unit == "ms") factor = 1;
    else if (unit == "s") factor = 1000;
    else if (unit == "m") factor = 60'000;
    else if (unit == "h") factor = 3'600'000;
    else throw std::invalid_argument("not a duration");
    if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / factor) {
        throw std::invalid_argument("duration overflows");
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(n * factor));
}

std::chrono::milliseconds parse_duration_in(const std::string& text, std::chrono::milliseconds min,
                                            std::chrono::milliseconds max) {
    std::chrono::milliseconds d{};
    try {
        d = parse_duration(text);
    } catch (const std::invalid_argument&) {
        throw value_error(std::string("is not ") + duration_form);
    }
    if (d < min || d > max) {
        throw value_error("is out of range; expected between " + std::to_string(min.count()) + "ms and " +
                          std::to_string(max.count()) + "ms");
    }
    return d;
}

bool parse_on_off(const std::string& text) {
    if (text == "on" || text == "true" || text == "1") return true;
    if (text == "off" || text == "false" || text == "0") return false;
    throw value_error("is not on or off");
}

std::uint64_t parse_uint(const std::string& text, std::uint64_t min, std::uint64_t max) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || n < min || n > max) {
        throw value_error("is not an integer between " + std::to_string(min) + " and " + std::to_string(max));
    }
    return n;
}

std::string parse_http_url(const std::string& text) {
    if (text.rfind("http://", 0) != 0 && text.rfind("https://", 0) != 0) {
        throw value_error("is not an http:// or https:// URL");
    }
    return text;
}

}  // namespace devicegate
