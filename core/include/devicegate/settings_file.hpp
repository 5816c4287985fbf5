#pragma once
// The settings file of devicegate-worker and devicegate-bridge: one "key value" per line
// ('#' starts a comment line), then the environment, which wins (<env_prefix><KEY>).
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace devicegate {

/// env_prefix + key in upper case: ("DEVICEGATE_", "redis_url") -> "DEVICEGATE_REDIS_URL".
std::string settings_env_name(const std::string& env_prefix, const std::string& key);

/// Calls `apply(key, value, where)` for every line of `file_text` (where = "line N: key"), then
/// for every key in `keys` that `env` holds (where = its variable name). `apply` throws the
/// caller's error for an unknown key or a bad value.
void read_settings(const std::string& file_text, const std::map<std::string, std::string>& env,
                   const std::vector<std::string>& keys, const std::string& env_prefix,
                   const std::function<void(const std::string& key, const std::string& value, const std::string& where)>& apply);

}  // namespace devicegate
