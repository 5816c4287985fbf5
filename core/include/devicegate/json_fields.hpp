#pragma once
// Reading untrusted JSON objects (pub/sub messages, journal lines, jobs): one place that
// turns nlohmann's exceptions into std::invalid_argument naming what is wrong, never the
// whole payload.
#include <nlohmann/json.hpp>

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

}  // namespace devicegate
