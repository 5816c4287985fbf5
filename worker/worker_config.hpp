#pragma once
// devicegate-worker's typed configuration: one "key value" file (config/devicegate-worker.conf.example)
// and environment variables DEVICEGATE_<KEY> (upper case) that override it, for containers.
// Parsed and validated once at start; secrets are never printed.
#include "devicegate/redis.hpp"
#include "devicegate/tenant_trust.hpp"

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

namespace devicegate::worker {

/// A bad setting; what() names the key and the expected form (never a secret's value).
struct worker_config_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct thingsboard_settings {
    std::string url;  // e.g. http://thingsboard:8080 (no trailing slash)
    std::string username;
    std::string password;  // secret
    /// The device profile new devices get, by exact name; it must exist (looked up once, lazily:
    /// missing = registrations paused). "": the tenant's default profile (no lookup).
    std::string device_profile;
    /// Optional: a customer title, or a customer id (UUID), that new and unassigned devices are
    /// assigned to; must exist like the profile.
    std::string customer;
    /// Optional: the label of a device the worker creates; "{device_id}" and "{serial}" are replaced.
    std::string label;
    /// Also send a Rule Engine REST message per registration. Off: the stock root chain has no
    /// "rest call reply" node, so each call would hold a thread for the whole timeout (408).
    bool rule_engine = false;
    std::chrono::milliseconds rule_engine_timeout{5000};
};

struct hawkbit_settings {
    std::string url;
    std::string username;
    std::string password;  // secret
    /// Optional: the target type new targets get, by exact name; must exist (like the profile).
    std::string target_type;
};

/// What a decommission job does (docs/worker.md "Decommission"): delete the ThingsBoard device and
/// the hawkBit target, or keep both (credentials replaced, a `revoked` attribute; actions
/// canceled, the devicegate-revoked tag).
enum class decommission_mode { delete_, keep };

struct worker_config {
    redis_options redis;
    std::string redis_prefix = "devicegate:";
    std::string consumer_group = "devicegate-workers";
    std::string consumer_name;  // default: the host name
    std::size_t concurrency = 16;
    std::chrono::milliseconds claim_idle{std::chrono::seconds(60)};
    std::size_t max_deliveries = 5;  // a job whose worker died this often is dead-lettered
    std::size_t max_attempts = 8;
    std::size_t dead_letter_max = 100000;  // the dead-letter stream's bound (MAXLEN ~), 0 = none
    std::chrono::milliseconds retry_initial{500};
    std::chrono::milliseconds retry_max{std::chrono::seconds(30)};
    std::chrono::milliseconds http_timeout{std::chrono::seconds(10)};
    /// After a refused login: no login (and no job) before this, doubling up to auth_retry_max.
    std::chrono::milliseconds auth_retry_initial{std::chrono::seconds(30)};
    std::chrono::milliseconds auth_retry_max{std::chrono::minutes(10)};
    enum decommission_mode decommission = decommission_mode::delete_;
    thingsboard_settings thingsboard;
    hawkbit_settings hawkbit;
    // The tenant's chain, as the brokers' plugin_opt_*_file: every job's certificate must verify
    // against it before anything is registered (a job is only a claim of whoever wrote Redis).
    std::string tenant_ca_file, ica_file, root_ca_file;
    std::chrono::seconds clock_skew{60};
    std::shared_ptr<const tenant_trust> trust;  // loaded from the three files by parse_worker_config
    std::string metrics_listen = "127.0.0.1:9464";  // "off" = no metrics endpoint
    std::string log_level = "info";                 // info | notice | warning

    /// Every setting as "key = value" lines, secrets shown as "(set)".
    std::string describe() const;
};

/// A device's label from the `thingsboard_label` template.
std::string expand_label(const std::string& label_template, const std::string& device_id, const std::string& serial_hex);

/// `file_text`: the config file's contents ("" for none); `env`: the process environment.
/// Also loads and cross-checks the CA files (a worker_config_error names the bad one).
worker_config parse_worker_config(const std::string& file_text, const std::map<std::string, std::string>& env);

}  // namespace devicegate::worker
