#include "devicegate/acl.hpp"

#include "devicegate/device_id.hpp"

#include <stdexcept>

namespace devicegate {

namespace {

std::vector<std::string_view> split_levels(std::string_view topic) {
    std::vector<std::string_view> levels;
    std::size_t start = 0;
    for (;;) {
        auto slash = topic.find('/', start);
        if (slash == std::string_view::npos) {
            levels.push_back(topic.substr(start));
            return levels;
        }
        levels.push_back(topic.substr(start, slash - start));
        start = slash + 1;
    }
}

bool has_access(topic_access granted, topic_access wanted) {
    return (static_cast<unsigned>(granted) & static_cast<unsigned>(wanted)) == static_cast<unsigned>(wanted);
}

void validate_pattern(std::string_view pattern) {
    if (pattern.empty()) throw std::invalid_argument("empty topic pattern");
    auto levels = split_levels(pattern);
    for (std::size_t i = 0; i < levels.size(); ++i) {
        auto level = levels[i];
        if (level.find('#') != std::string_view::npos && (level != "#" || i + 1 != levels.size())) {
            throw std::invalid_argument("'#' must be a whole last level in \"" + std::string(pattern) + "\"");
        }
        if (level.find('+') != std::string_view::npos && level != "+") {
            throw std::invalid_argument("'+' must be a whole level in \"" + std::string(pattern) + "\"");
        }
    }
}

}  // namespace

std::vector<acl_rule> default_acl_rules() {
    return {
        {topic_access::write, "v1/devices/me/#"},
        {topic_access::readwrite, "devices/%c/#"},
    };
}

acl_rule parse_acl_rule(std::string_view text) {
    auto space = text.find_first_of(" \t");
    if (space == std::string_view::npos) {
        throw std::invalid_argument("expected \"<read|write|readwrite> <topic pattern>\"");
    }
    auto access_word = text.substr(0, space);
    auto pattern_at = text.find_first_not_of(" \t", space);
    if (pattern_at == std::string_view::npos) throw std::invalid_argument("expected \"<read|write|readwrite> <topic pattern>\"");
    auto pattern = text.substr(pattern_at);
    acl_rule rule;
    if (access_word == "read") {
        rule.access = topic_access::read;
    } else if (access_word == "write") {
        rule.access = topic_access::write;
    } else if (access_word == "readwrite") {
        rule.access = topic_access::readwrite;
    } else {
        throw std::invalid_argument("access must be read, write or readwrite, got \"" + std::string(access_word) +
                                    "\"");
    }
    if (pattern.find_first_of(" \t") != std::string_view::npos) {
        throw std::invalid_argument("topic pattern must not contain whitespace");
    }
    validate_pattern(pattern);
    rule.pattern = std::string(pattern);
    return rule;
}

acl_rule parse_client_acl_rule(std::string_view text) {
    auto space = text.find_first_of(" \t");
    if (space == std::string_view::npos) {
        throw std::invalid_argument("expected \"<device id> <read|write|readwrite> <topic pattern>\"");
    }
    auto id = text.substr(0, space);
    if (!is_safe_device_id(id)) throw std::invalid_argument("\"" + std::string(id) + "\" is not a safe device id");
    auto rest = text.find_first_not_of(" \t", space);
    if (rest == std::string_view::npos) throw std::invalid_argument("expected \"<device id> <read|write|readwrite> <topic pattern>\"");
    try {
        acl_rule rule = parse_acl_rule(text.substr(rest));
        rule.only_for = std::string(id);
        return rule;
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string(e.what()) +
                                    " after the device id; the form is \"<device id> <read|write|readwrite> <topic pattern>\"");
    }
}

acl_policy::acl_policy(std::vector<acl_rule> rules) : rules_(std::move(rules)) {
    for (const auto& rule : rules_) {
        validate_pattern(rule.pattern);
        compiled_rule compiled{rule.access, rule.only_for, {}};
        for (auto level : split_levels(rule.pattern)) compiled.levels.emplace_back(level);
        compiled_.push_back(std::move(compiled));
    }
}

bool filter_within(std::string_view filter, const std::vector<std::string_view>& pattern) {
    auto levels = split_levels(filter);
    if (!filter.empty() && filter.front() == '$' && !pattern.empty() && (pattern[0] == "+" || pattern[0] == "#")) {
        return false;  // MQTT 3.1.1 section 4.7.2: wildcards at the first level do not match $ topics
    }
    std::size_t i = 0;
    for (; i < levels.size(); ++i) {
        if (i >= pattern.size()) return false;
        if (pattern[i] == "#") return true;
        if (levels[i] == "#") return false;  // the filter reaches further than the pattern
        if (pattern[i] == "+") continue;     // a literal or '+' in the filter fits in '+'
        if (levels[i] == "+" || levels[i] != pattern[i]) return false;
    }
    // "a/#" also matches "a" itself.
    return i == pattern.size() || (i + 1 == pattern.size() && pattern[i] == "#");
}

bool acl_policy::allows(std::string_view device_id, std::string_view topic, topic_access access) const {
    if (topic.empty()) return false;
    std::vector<std::string_view> levels;
    std::vector<std::string> substituted;
    for (const auto& rule : compiled_) {
        if (!has_access(rule.access, access)) continue;
        if (!rule.only_for.empty() && rule.only_for != device_id) continue;
        levels.clear();
        substituted.clear();
        substituted.reserve(rule.levels.size());
        for (const auto& level : rule.levels) {
            auto at = level.find("%c");
            if (at == std::string::npos) {
                levels.emplace_back(level);
                continue;
            }
            std::string s = level;
            for (; at != std::string::npos; at = s.find("%c", at + device_id.size())) {
                s.replace(at, 2, device_id);
            }
            substituted.push_back(std::move(s));
            levels.emplace_back(substituted.back());
        }
        if (filter_within(topic, levels)) return true;
    }
    return false;
}

}  // namespace devicegate
