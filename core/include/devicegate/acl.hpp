#pragma once
// Per-device topic rules. A rule is an MQTT topic filter in which "%c" stands for the
// device id; it grants read (subscribe and receive) and/or write (publish).
#include <string>
#include <string_view>
#include <vector>

namespace devicegate {

enum class topic_access : unsigned { none = 0, read = 1, write = 2, readwrite = 3 };

struct acl_rule {
    topic_access access = topic_access::none;
    std::string pattern;
    std::string only_for;  // a device id: the rule applies to that device alone ("" = every device)
};

/// The defaults: ThingsBoard's device API for publishing (v1/devices/me/... is the same
/// topic for every device on a mosquitto broker, so reading it would leak one device's
/// traffic to every other), and a per-device subtree for both directions.
std::vector<acl_rule> default_acl_rules();

/// Parses "<read|write|readwrite> <pattern>"; throws std::invalid_argument with the
/// expected form.
acl_rule parse_acl_rule(std::string_view text);
/// Parses "<device id> <read|write|readwrite> <pattern>" (a rule for one device, e.g. a
/// monitoring or bridge identity issued by the same Sub-CA).
acl_rule parse_client_acl_rule(std::string_view text);

class acl_policy {
public:
    explicit acl_policy(std::vector<acl_rule> rules);

    /// Whether `device_id` may publish to `topic` (write), or subscribe to the filter /
    /// receive on the topic `topic` (read). A subscription filter is allowed only if every
    /// topic it can match is inside one rule (e.g. devices/a/+ inside devices/a/#).
    bool allows(std::string_view device_id, std::string_view topic, topic_access access) const;

    const std::vector<acl_rule>& rules() const noexcept { return rules_; }

private:
    struct compiled_rule {
        topic_access access;
        std::string only_for;
        std::vector<std::string> levels;  // "%c" is substituted at check time
    };
    std::vector<acl_rule> rules_;
    std::vector<compiled_rule> compiled_;
};

/// True if every topic matched by `filter` is matched by `pattern` (MQTT wildcard
/// semantics, including "a/#" matching "a" and wildcards not matching leading-$ topics).
bool filter_within(std::string_view filter, const std::vector<std::string_view>& pattern_levels);

}  // namespace devicegate
