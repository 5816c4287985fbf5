#include "devicegate/settings_file.hpp"

#include <cctype>
#include <sstream>

namespace devicegate {

namespace {

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

std::string settings_env_name(const std::string& env_prefix, const std::string& key) {
    std::string out = env_prefix;
    for (char ch : key) out += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return out;
}

void read_settings(const std::string& file_text, const std::map<std::string, std::string>& env,
                   const std::vector<std::string>& keys, const std::string& env_prefix,
                   const std::function<void(const std::string& key, const std::string& value, const std::string& where)>& apply) {
    std::istringstream in(file_text);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        auto space = line.find_first_of(" \t");
        const std::string key = line.substr(0, space);
        const std::string value = space == std::string::npos ? "" : trim(line.substr(space));
        apply(key, value, "line " + std::to_string(number) + ": " + key);
    }
    for (const std::string& key : keys) {
        const std::string name = settings_env_name(env_prefix, key);
        auto e = env.find(name);
        if (e != env.end()) apply(key, e->second, name);
    }
}

}  // namespace devicegate
