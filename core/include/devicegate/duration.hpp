#pragma once
// Typed parsers for configuration values, shared by the plugin options (plugin_opt_* in
// mosquitto.conf), the worker's configuration and the operator CLI, so the three accept the
// same spellings. Each throws value_error whose what() completes a sentence about the value
// ("\"<value>\" " + what()): it describes the expected form and never repeats the value,
// which may be a secret.
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace devicegate {

struct value_error : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

inline constexpr const char* duration_form = "a duration such as 500ms, 30s, 5m or 24h";

/// "500ms", "30s", "5m", "24h" -> milliseconds (a decimal number and exactly one unit, no
/// sign, no spaces); throws std::invalid_argument.
std::chrono::milliseconds parse_duration(const std::string& text);

/// parse_duration within [min, max]; value_error "is not a duration such as ..." or
/// "is out of range; expected between <min>ms and <max>ms".
std::chrono::milliseconds parse_duration_in(const std::string& text, std::chrono::milliseconds min,
                                            std::chrono::milliseconds max);

/// Booleans: DeviceGate's documented on/off, plus mosquitto's own spellings true/false and
/// 1/0 (mosquitto 2.0 src/conf.c conf__parse_bool accepts exactly "true"/"1" and
/// "false"/"0"), so an operator's habit from mosquitto.conf works. Nothing else (not yes/no:
/// neither mosquitto nor DeviceGate ever documented them). value_error "is not on or off".
bool parse_on_off(const std::string& text);

/// A decimal integer within [min, max] (digits only: no sign, no spaces, no suffix);
/// value_error "is not an integer between <min> and <max>".
std::uint64_t parse_uint(const std::string& text, std::uint64_t min, std::uint64_t max);

/// An http:// or https:// URL, returned unchanged; value_error "is not an http:// or
/// https:// URL".
std::string parse_http_url(const std::string& text);

}  // namespace devicegate
