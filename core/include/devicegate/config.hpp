#pragma once
// The plugin's typed configuration, parsed once from the plugin_opt_* lines of
// mosquitto.conf (mosquitto strips the "plugin_opt_" prefix) and shared read-only.
#include "devicegate/acl.hpp"
#include "devicegate/duration.hpp"  // parse_duration, formerly declared here
#include "devicegate/fleet_model.hpp"
#include "devicegate/redis.hpp"
#include "devicegate/session_registry.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace devicegate {

/// A bad option; what() reads "plugin_opt_<option>: <problem>; expected <form>".
struct config_error : std::runtime_error {
    config_error(const std::string& option, const std::string& problem)
        : std::runtime_error("plugin_opt_" + option + ": " + problem), option_name(option) {}
    std::string option_name;
};

enum class stale_policy { deny, allow };
/// "deny" or "allow"; value_error "is not deny or allow".
stale_policy parse_stale_policy(const std::string& text);

// 64 MiB: a CRL of 1,000,000 serials is ~33 MiB DER (~45 MiB PEM), so twice the largest
// expected tenant still fits, while a hostile body costs at most this much before refusal
// (the signature is checked before the entries are decoded).
inline constexpr std::size_t default_crl_max_bytes = 64u << 20;
enum class listener_check_mode { enforce, warn, off };
enum class ocsp_mode { off, soft, hard };

struct plugin_config {
    std::string tenant_ca_file;            // the tenant Sub-CA that must have issued every device
    std::string ica_file;                  // the provider intermediate CA that issued the Sub-CA
    std::string root_ca_file;              // the provider Root (trust anchor)
    std::vector<std::string> crl_files;    // each verified against Sub-CA, ICA or Root
    std::vector<std::string> crl_urls;     // http(s); at least one CRL file or URL
    bool crl_distribution_points = false;  // also fetch the CDP URLs of device certificates
    std::chrono::milliseconds crl_refresh{std::chrono::minutes(15)};
    std::chrono::milliseconds crl_fetch_timeout{std::chrono::seconds(10)};
    std::chrono::milliseconds crl_retry{std::chrono::seconds(30)};  // after a failed fetch, doubling up to crl_refresh
    std::chrono::milliseconds crl_poll_interval{1000};
    std::size_t crl_max_bytes = default_crl_max_bytes;  // CRL files and URL bodies
    // OCSP for device certificates.
    ocsp_mode ocsp = ocsp_mode::off;
    std::string ocsp_responder_url;  // "" = the certificate's Authority Information Access
    bool ocsp_nonce = true;
    std::chrono::seconds ocsp_max_ttl{std::chrono::hours(1)};
    std::size_t ocsp_cache_size = 100000;
    std::chrono::milliseconds ocsp_timeout{std::chrono::seconds(5)};
    std::chrono::seconds ocsp_refresh_ahead{std::chrono::minutes(5)};
    bool ocsp_sub_ca = false;                // also ask the ICA's responder about the Sub-CA
    std::string ocsp_sub_ca_responder_url;   // "" = the Sub-CA certificate's AIA
    std::chrono::seconds crl_grace{std::chrono::hours(24)};
    stale_policy crl_stale_policy = stale_policy::deny;
    std::chrono::seconds clock_skew{60};
    std::vector<acl_rule> acl_rules = default_acl_rules();
    std::size_t verify_cache_size = 100000;
    listener_check_mode listener_check = listener_check_mode::enforce;
    bool leaf_signature_always = false;  // verify every leaf's signature even when a handshake_pin proves it done

    // Redis: the deny-list and first-connect jobs. Off without redis_url.
    std::optional<redis_options> redis;
    std::string redis_prefix = "devicegate:";
    std::chrono::seconds denylist_grace{std::chrono::minutes(10)};
    stale_policy denylist_stale_policy = stale_policy::deny;
    std::chrono::milliseconds denylist_resync_interval{std::chrono::seconds(60)};
    bool first_connect_jobs = true;
    std::size_t job_memory_limit = 1000;
    std::uint64_t job_journal_max_bytes = 1ull << 30;
    std::string state_dir;  // journal and deny-list cache; "" = mosquitto's persistence_location
    std::string broker_id;  // "" = the host name
    std::chrono::milliseconds stats_interval{std::chrono::seconds(10)};  // 0 = no $SYS stats
    // One session per device across the brokers sharing the Redis (fleet_registry.hpp).
    bool fleet_sessions = true;
    std::chrono::milliseconds broker_heartbeat_interval{std::chrono::seconds(5)};
    std::chrono::milliseconds broker_heartbeat_timeout{std::chrono::seconds(15)};
    clone_policy clones = clone_policy::log;

    // Offline sessions (issue 12, finding 2): how long an offline identity is kept for its
    // will and queued messages, and how many at most.
    // Service identities (issue 12, finding 6): not devices; their own topic rules only.
    std::string service_ca_file;                 // optional separate CA for services
    std::vector<acl_rule> service_rules;         // each with only_for = the service name
    std::set<std::string> service_names;

    std::chrono::milliseconds offline_session_retention{std::chrono::hours(24 * 30)};
    std::size_t max_offline_sessions = 1'000'000;
    // Deny log rate limit and disconnect after too many denials (finding 4).
    deny_limits deny_limit;
};

using option_list = std::vector<std::pair<std::string, std::string>>;

/// The parse state behind plugin_option::parse (defined in config.cpp).
struct config_builder;

/// One plugin option: mosquitto.conf's plugin_opt_<name>. The table of them is the only list
/// of options: parsing, the unknown-option message and the documentation check use it.
struct plugin_option {
    const char* name;
    void (*parse)(config_builder&, const std::string& value);  // throws config_error
    const char* default_value;  // as documented ("required", "none", "15m", ...)
    const char* doc;            // one line
};
const std::vector<plugin_option>& plugin_option_table();

/// Validates every option; throws config_error naming the first bad one. Unknown options
/// are errors (a typo must not silently leave a check off).
plugin_config parse_plugin_config(const option_list& options);

}  // namespace devicegate
