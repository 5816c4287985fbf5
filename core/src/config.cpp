#include "devicegate/config.hpp"

#include <algorithm>

namespace devicegate {

stale_policy parse_stale_policy(const std::string& text) {
    if (text == "deny") return stale_policy::deny;
    if (text == "allow") return stale_policy::allow;
    throw value_error("is not deny or allow");
}

/// The parse state: the configuration so far and the option being parsed (for messages).
struct config_builder {
    plugin_config config;
    std::string name;               // of the option being parsed
    bool custom_acl = false;        // an acl_pattern replaced the default rules
    std::vector<acl_rule> client_rules;  // acl_client_pattern: appended after the others

    [[noreturn]] void fail(const std::string& value, const std::string& problem) const {
        throw config_error(name, "\"" + value + "\" " + problem);
    }
    template <class Parse>
    auto typed(const std::string& value, Parse parse) const {
        try {
            return parse();
        } catch (const value_error& e) {
            fail(value, e.what());
        }
    }
    std::chrono::milliseconds duration(const std::string& v, std::chrono::milliseconds min,
                                       std::chrono::milliseconds max) const {
        return typed(v, [&] { return parse_duration_in(v, min, max); });
    }
    std::chrono::seconds seconds(const std::string& v, std::chrono::milliseconds min, std::chrono::milliseconds max) const {
        return std::chrono::duration_cast<std::chrono::seconds>(duration(v, min, max));
    }
    std::size_t count(const std::string& v, std::size_t min, std::size_t max) const {
        return static_cast<std::size_t>(typed(v, [&] { return parse_uint(v, min, max); }));
    }
    bool on_off(const std::string& v) const { return typed(v, [&] { return parse_on_off(v); }); }
    std::string url(const std::string& v) const { return typed(v, [&] { return parse_http_url(v); }); }
    std::string path(const std::string& v) const {
        if (v.empty() || v.front() != '/') fail(v, "is not an absolute file path");
        return v;
    }
    stale_policy policy(const std::string& v) const { return typed(v, [&] { return parse_stale_policy(v); }); }
    template <class Parse>
    acl_rule rule(const std::string& v, Parse parse) const {
        try {
            return parse(v);
        } catch (const std::invalid_argument& e) {
            throw config_error(name, "\"" + v + "\": " + e.what());
        }
    }
};

namespace {

using namespace std::chrono;
using B = config_builder;
using V = const std::string&;

ocsp_mode ocsp_option(const B& b, V v) {
    if (v == "off") return ocsp_mode::off;
    if (v == "soft") return ocsp_mode::soft;
    if (v == "hard") return ocsp_mode::hard;
    b.fail(v, "is not off, soft or hard");
}

listener_check_mode listener_check_option(const B& b, V v) {
    if (v == "enforce") return listener_check_mode::enforce;
    if (v == "warn") return listener_check_mode::warn;
    if (v == "off") return listener_check_mode::off;
    b.fail(v, "is not enforce, warn or off");
}

std::optional<redis_options> redis_option(const B& b, V v) {
    try {
        return redis_options::parse_url(v);
    } catch (const std::invalid_argument& e) {
        throw config_error(b.name, e.what());  // the message never repeats the password
    }
}

std::string prefix_option(const B& b, V v) {
    if (v.empty() || v.find_first_of(" \t") != std::string::npos) b.fail(v, "is not a key prefix such as devicegate:");
    return v;
}

std::string broker_id_option(const B& b, V v) {
    if (v.empty() || v.size() > 128 || v.find_first_of(" \t") != std::string::npos) {
        b.fail(v, "is not a broker id (1-128 characters, no whitespace)");
    }
    return v;
}

clone_policy clone_policy_option(const B& b, V v) {
    if (v == "log") return clone_policy::log;
    if (v == "refuse") return clone_policy::refuse;
    b.fail(v, "is not log or refuse");
}

// "N/interval" (e.g. 100/10s) or off.
void deny_disconnect_option(B& b, V v) {
    if (v == "off") {
        b.config.deny_limit.disconnect_after = 0;
        return;
    }
    const auto slash = v.find('/');
    if (slash == std::string::npos) b.fail(v, "is not off or <count>/<interval> such as 100/10s");
    b.config.deny_limit.disconnect_after = b.count(v.substr(0, slash), 1, 1'000'000);
    b.config.deny_limit.disconnect_interval = b.duration(v.substr(slash + 1), milliseconds(100), hours(1));
}

void acl_pattern_option(B& b, V v) {
    if (!b.custom_acl) b.config.acl_rules.clear();
    b.custom_acl = true;
    b.config.acl_rules.push_back(b.rule(v, parse_acl_rule));
}

// The one list of plugin options: parse_plugin_config dispatches on it, the unknown-option
// message lists it, and a unit test checks that docs/configuration.md documents every name.
const std::vector<plugin_option> options_table = {
    {"tenant_ca_file", [](B& b, V v) { b.config.tenant_ca_file = b.path(v); }, "required",
     "The tenant Sub-CA certificate (PEM or DER); devices must be issued directly by it."},
    {"ica_file", [](B& b, V v) { b.config.ica_file = b.path(v); }, "required",
     "The provider intermediate CA that issued the Sub-CA."},
    {"root_ca_file", [](B& b, V v) { b.config.root_ca_file = b.path(v); }, "required",
     "The provider Root (the trust anchor)."},
    {"crl_file", [](B& b, V v) { b.config.crl_files.push_back(b.path(v)); }, "none, repeatable",
     "A CRL file (PEM or DER), verified against the Sub-CA, ICA or Root."},
    {"crl_url", [](B& b, V v) { b.config.crl_urls.push_back(b.url(v)); }, "none, repeatable",
     "A CRL URL (http/https) fetched on a background thread; at least one crl_file or crl_url."},
    {"crl_distribution_points", [](B& b, V v) { b.config.crl_distribution_points = b.on_off(v); }, "off",
     "on: also fetch the http(s) CRL Distribution Points of admitted device certificates."},
    {"crl_refresh", [](B& b, V v) { b.config.crl_refresh = b.duration(v, seconds(1), hours(24)); }, "15m",
     "Longest interval between fetches of a CRL URL (1s-24h)."},
    {"crl_fetch_timeout", [](B& b, V v) { b.config.crl_fetch_timeout = b.duration(v, milliseconds(100), seconds(60)); },
     "10s", "Timeout of one CRL fetch (100ms-60s)."},
    {"crl_retry", [](B& b, V v) { b.config.crl_retry = b.duration(v, milliseconds(100), hours(24)); }, "30s",
     "First retry after a failed or refused CRL fetch, doubling up to crl_refresh (100ms-24h)."},
    {"crl_max_bytes", [](B& b, V v) { b.config.crl_max_bytes = b.count(v, 1024, std::size_t{1} << 31); }, "67108864",
     "Largest CRL file or URL body (1 KiB-2 GiB); URL bodies are cut off while downloading."},
    {"ocsp", [](B& b, V v) { b.config.ocsp = ocsp_option(b, v); }, "off",
     "OCSP for device certificates: off, soft (admit, check in the background) or hard (refuse until answered)."},
    {"ocsp_responder_url", [](B& b, V v) { b.config.ocsp_responder_url = b.url(v); }, "the certificate's AIA",
     "OCSP responder URL override (http/https)."},
    {"ocsp_nonce", [](B& b, V v) { b.config.ocsp_nonce = b.on_off(v); }, "on",
     "Send a nonce; a response with a different nonce is refused."},
    {"ocsp_max_ttl", [](B& b, V v) { b.config.ocsp_max_ttl = b.seconds(v, seconds(1), hours(24 * 7)); }, "1h",
     "OCSP answers are cached until their nextUpdate, at most this long (1s-7 days)."},
    {"ocsp_cache_size", [](B& b, V v) { b.config.ocsp_cache_size = b.count(v, 1, 10'000'000); }, "100000",
     "Cached OCSP answers (1-10,000,000)."},
    {"ocsp_timeout", [](B& b, V v) { b.config.ocsp_timeout = b.duration(v, milliseconds(100), seconds(60)); }, "5s",
     "Timeout of one OCSP request (100ms-60s)."},
    {"ocsp_refresh_ahead", [](B& b, V v) { b.config.ocsp_refresh_ahead = b.seconds(v, seconds(0), hours(24)); }, "5m",
     "Connected devices' OCSP answers are refreshed this long before they expire (0-24h)."},
    {"ocsp_sub_ca", [](B& b, V v) { b.config.ocsp_sub_ca = b.on_off(v); }, "off",
     "on: also keep an OCSP answer about the tenant Sub-CA from the ICA's responder."},
    {"ocsp_sub_ca_responder_url", [](B& b, V v) { b.config.ocsp_sub_ca_responder_url = b.url(v); },
     "the Sub-CA's AIA", "Responder URL override for the Sub-CA question."},
    {"crl_poll_interval", [](B& b, V v) { b.config.crl_poll_interval = b.duration(v, milliseconds(100), hours(1)); },
     "1s", "How often CRL files are checked for changes (100ms-1h); SIGHUP re-reads them at once."},
    {"crl_grace", [](B& b, V v) { b.config.crl_grace = b.seconds(v, milliseconds(0), hours(24 * 30)); }, "24h",
     "How long a CRL past its nextUpdate, or a CA's CRL no source delivers any more, stays in force before "
     "crl_stale_policy applies (0-30 days)."},
    {"crl_stale_policy", [](B& b, V v) { b.config.crl_stale_policy = b.policy(v); }, "deny",
     "deny: refuse devices while a CRL is stale; allow: keep admitting on the last good CRL."},
    {"clock_skew", [](B& b, V v) { b.config.clock_skew = b.seconds(v, milliseconds(0), hours(1)); }, "60s",
     "Tolerance for certificate validity times (0-1h)."},
    {"acl_pattern", acl_pattern_option, "read and write under devices/%c/",
     "<read|write|readwrite> <topic filter>, repeatable, %c is the device id; any line replaces the defaults."},
    {"acl_client_pattern", [](B& b, V v) { b.client_rules.push_back(b.rule(v, parse_client_acl_rule)); }, "none",
     "<device id> <read|write|readwrite> <topic filter>, repeatable: a rule for one device id only."},
    {"verify_cache_size", [](B& b, V v) { b.config.verify_cache_size = b.count(v, 1, 10'000'000); }, "100000",
     "Verified certificates remembered (1-10,000,000); when full it is emptied."},
    {"listener_check", [](B& b, V v) { b.config.listener_check = listener_check_option(b, v); }, "enforce",
     "enforce: refuse to start if mosquitto.conf would bypass the plugin; warn: log it; off."},
    {"leaf_signature",
     [](B& b, V v) {
         if (v != "auto" && v != "always") b.fail(v, "is not auto or always");
         b.config.leaf_signature_always = v == "always";
     },
     "auto",
     "auto: a device certificate's signature is not verified again when every listener's cafile proves that "
     "mosquitto's TLS handshake verified it with the tenant Sub-CA's key (docs/security.md); always: verify it "
     "at every first connect anyway."},
    {"redis_url", [](B& b, V v) { b.config.redis = redis_option(b, v); }, "off",
     "redis://[[user]:password@]host[:port][/db], or with Redis Sentinel "
     "redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"
     "[?sentinel_user=U&sentinel_password=P]: enables the deny-list and first-connect jobs."},
    {"redis_prefix", [](B& b, V v) { b.config.redis_prefix = prefix_option(b, v); }, "devicegate:",
     "Prefix of every Redis key."},
    {"denylist_grace", [](B& b, V v) { b.config.denylist_grace = b.seconds(v, milliseconds(0), hours(24 * 30)); },
     "10m", "While Redis is unreachable, devices are decided on the local deny-list copy this long (0-30 days)."},
    {"denylist_stale_policy", [](B& b, V v) { b.config.denylist_stale_policy = b.policy(v); }, "deny",
     "Then deny: refuse every device, or allow: keep using the copy."},
    {"denylist_resync_interval",
     [](B& b, V v) { b.config.denylist_resync_interval = b.duration(v, seconds(1), hours(24)); }, "60s",
     "Full resync of the deny-list besides the pub/sub changes (1s-24h)."},
    {"first_connect_jobs", [](B& b, V v) { b.config.first_connect_jobs = b.on_off(v); }, "on",
     "Enqueue first-connect and certificate-changed jobs."},
    {"job_memory_limit", [](B& b, V v) { b.config.job_memory_limit = b.count(v, 0, 10'000'000); }, "1000",
     "Jobs held in memory while Redis is unreachable; more go to the journal file."},
    {"job_journal_max_bytes",
     [](B& b, V v) { b.config.job_journal_max_bytes = b.count(v, 4096, std::size_t{1} << 40); }, "1073741824",
     "Bound of the job journal; a job beyond it is dropped with an error line and counted."},
    {"state_dir", [](B& b, V v) { b.config.state_dir = b.path(v); }, "persistence_location, else /var/lib/mosquitto",
     "Holds the job journal, the local deny-list copy and the newest CRL per CA (rollback protection)."},
    {"broker_id", [](B& b, V v) { b.config.broker_id = broker_id_option(b, v); }, "the host name",
     "Written into jobs and the device hash; names this broker in the fleet registry (unique per broker)."},
    {"stats_interval", [](B& b, V v) { b.config.stats_interval = b.duration(v, milliseconds(0), hours(1)); }, "10s",
     "How often the counters are published under $SYS/broker/devicegate/ (0s = off)."},
    {"fleet_sessions", [](B& b, V v) { b.config.fleet_sessions = b.on_off(v); }, "on",
     "With redis_url: one session per device across every broker sharing the Redis (a newer session on another "
     "broker ends the older one), and this broker's heartbeat for devicegate-ctl brokers."},
    {"broker_heartbeat_interval",
     [](B& b, V v) { b.config.broker_heartbeat_interval = b.duration(v, milliseconds(100), minutes(1)); }, "5s",
     "How often the broker writes its heartbeat and renews its session registry's expiry (100ms-1m)."},
    {"broker_heartbeat_timeout",
     [](B& b, V v) { b.config.broker_heartbeat_timeout = b.duration(v, milliseconds(300), minutes(10)); }, "15s",
     "A broker without a heartbeat this long counts as dead; its session entries expire (300ms-10m, more than "
     "twice broker_heartbeat_interval)."},
    {"clone_policy", [](B& b, V v) { b.config.clones = clone_policy_option(b, v); }, "log",
     "Two sessions of one device from different source addresses: log (count it; the older session ends as in "
     "any takeover) or refuse (end both)."},
    {"service",
     [](B& b, V v) {
         b.config.service_rules.push_back(b.rule(v, parse_client_acl_rule));
         b.config.service_names.insert(b.config.service_rules.back().only_for);
     },
     "none",
     "<name> <read|write|readwrite> <topic filter>, repeatable: a service identity (CN = client id = name) and "
     "one of its rules."},
    {"service_ca_file", [](B& b, V v) { b.config.service_ca_file = b.path(v); }, "none",
     "A CA (issued by the ICA) whose certificates may be services only; without it services come from the Sub-CA."},
    {"offline_session_retention",
     [](B& b, V v) { b.config.offline_session_retention = b.duration(v, seconds(1), hours(24 * 3650)); }, "720h",
     "How long an offline session's identity is kept for its will and queued messages (1s-10 years)."},
    {"max_offline_sessions", [](B& b, V v) { b.config.max_offline_sessions = b.count(v, 0, 100'000'000); },
     "1000000", "Offline session identities kept at most; the oldest is forgotten first (0-100,000,000)."},
    {"deny_log_burst", [](B& b, V v) { b.config.deny_limit.log_burst = b.count(v, 0, 1'000'000); }, "5",
     "Deny lines logged in full per client and deny_log_interval; the rest are counted in one summary line."},
    {"deny_log_interval",
     [](B& b, V v) { b.config.deny_limit.log_interval = b.duration(v, milliseconds(100), hours(24)); }, "10s",
     "The window of deny_log_burst (100ms-24h)."},
    {"deny_disconnect_after", deny_disconnect_option, "off",
     "<count>/<interval> (e.g. 100/10s): disconnect a client after that many denials within the interval."},
};

std::string known_options() {
    std::string out;
    for (const auto& o : options_table) out += (out.empty() ? "" : ", ") + std::string(o.name);
    return out;
}

void check_required(const plugin_config& config) {
    if (config.tenant_ca_file.empty()) throw config_error("tenant_ca_file", "missing; expected the tenant Sub-CA certificate file");
    if (config.ica_file.empty()) throw config_error("ica_file", "missing; expected the provider ICA certificate file");
    if (config.root_ca_file.empty()) throw config_error("root_ca_file", "missing; expected the provider Root certificate file");
    if (config.crl_files.empty() && config.crl_urls.empty()) {
        throw config_error("crl_file", "missing; expected at least one CRL file (PEM or DER) or plugin_opt_crl_url");
    }
}

}  // namespace

const std::vector<plugin_option>& plugin_option_table() { return options_table; }

plugin_config parse_plugin_config(const option_list& options) {
    config_builder b;
    for (const auto& [name, value] : options) {
        auto option = std::find_if(options_table.begin(), options_table.end(),
                                   [&, &name = name](const plugin_option& o) { return name == o.name; });
        if (option == options_table.end()) throw config_error(name, "unknown option; known options are " + known_options());
        b.name = name;
        option->parse(b, value);
    }
    b.config.acl_rules.insert(b.config.acl_rules.end(), b.client_rules.begin(), b.client_rules.end());
    check_required(b.config);
    if (b.config.broker_heartbeat_timeout < 2 * b.config.broker_heartbeat_interval) {
        throw config_error("broker_heartbeat_timeout",
                           "must be at least twice broker_heartbeat_interval (one late heartbeat must not make a "
                           "live broker's sessions vanish)");
    }
    if (!b.config.service_ca_file.empty() && b.config.service_names.empty()) {
        throw config_error("service_ca_file", "is set but no plugin_opt_service names a service");
    }
    return std::move(b.config);
}

}  // namespace devicegate
