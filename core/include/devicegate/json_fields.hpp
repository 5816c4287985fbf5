#pragma once
// Reading untrusted JSON objects (pub/sub messages, journal lines, jobs): one place that
// turns nlohmann's exceptions into std::invalid_argument naming what is wrong, never the
// whole payload.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devicegate {

inline nlohmann::json parse_json_object(std::string_view text) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception&) {
        throw std::invalid_argument("not JSON");
    }
    if (!j.is_object()) throw std::invalid_argument("not a JSON object");
    return j;
}

inline std::string string_field(const nlohmann::json& j, const char* name) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) throw std::invalid_argument(std::string("missing string field ") + name);
    return it->get<std::string>();
}

/// Appends `s` as a JSON string, written by hand (issue 13: nlohmann's object and dump()
/// allocate per field, on every connect). Non-ASCII text goes through nlohmann, which refuses
/// invalid UTF-8.
inline void append_json_string(std::string& out, std::string_view s) {
    if (std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
        out += nlohmann::json(std::string(s)).dump();
        return;
    }
    auto plain = [](char c) { return c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20; };
    out += '"';
    for (std::size_t at = 0; at < s.size();) {
        // Runs of plain characters in one append (a PEM line is 64 of them).
        std::size_t end = at;
        while (end < s.size() && plain(s[end])) ++end;
        out.append(s.data() + at, end - at);
        if (end == s.size()) break;
        const char c = s[end];
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default: {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                out += buf;
            }
        }
        at = end + 1;
    }
    out += '"';
}

}  // namespace devicegate
