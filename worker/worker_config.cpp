#include "worker_config.hpp"

#include "devicegate/duration.hpp"
#include "devicegate/settings_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <sstream>
#include <vector>

namespace devicegate::worker {

namespace {

struct setting {
    const char* key;
    const char* form;
    bool secret;
    std::function<void(worker_config&, const std::string&)> set;
};

// The typed parsers of duration.hpp, shared with the plugin's options.
std::size_t count(const std::string& v, std::size_t min, std::size_t max) {
    return static_cast<std::size_t>(parse_uint(v, min, max));
}

std::chrono::milliseconds duration(const std::string& v) {
    return parse_duration_in(v, std::chrono::milliseconds(1), std::chrono::milliseconds::max());
}

std::string http_url(const std::string& v) {
    std::string out = parse_http_url(v);
    while (!out.empty() && out.back() == '/') out.pop_back();
    return out;
}

std::string path(const std::string& v) {
    if (v.empty()) throw std::invalid_argument("empty");
    return v;
}

/// Text for a name or a label: printable, without control characters, at most `max` bytes.
std::string bounded(const std::string& v, std::size_t max) {
    if (v.size() > max) throw std::invalid_argument("too long");
    for (unsigned char ch : v) {
        if (ch < 0x20 || ch == 0x7f) throw std::invalid_argument("control character");
    }
    return v;
}

std::string profile_name(const std::string& v) { return bounded(v, 255); }

const std::vector<setting>& settings() {
    static const std::vector<setting> all = {
        {"redis_url", "redis://[[user]:password@]host[:port][/db] or redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db][?sentinel_password=P]", true,
         [](worker_config& c, const std::string& v) { c.redis = redis_options::parse_url(v); }},
        {"redis_prefix", "a key prefix such as devicegate:", false,
         [](worker_config& c, const std::string& v) {
             if (v.empty()) throw std::invalid_argument("empty");
             c.redis_prefix = v;
         }},
        {"consumer_group", "a Redis consumer group name", false,
         [](worker_config& c, const std::string& v) {
             if (v.empty()) throw std::invalid_argument("empty");
             c.consumer_group = v;
         }},
        {"consumer_name", "a name unique to this worker (default: the host name)", false,
         [](worker_config& c, const std::string& v) {
             if (v.empty()) throw std::invalid_argument("empty");
             c.consumer_name = v;
         }},
        {"concurrency", "a number of concurrent jobs, 1..256", false,
         [](worker_config& c, const std::string& v) { c.concurrency = count(v, 1, 256); }},
        {"claim_idle", "a duration such as 60s", false,
         [](worker_config& c, const std::string& v) { c.claim_idle = duration(v); }},
        {"max_deliveries", "a number 1..100", false,
         [](worker_config& c, const std::string& v) { c.max_deliveries = count(v, 1, 100); }},
        {"max_attempts", "a number 1..100", false,
         [](worker_config& c, const std::string& v) { c.max_attempts = count(v, 1, 100); }},
        {"dead_letter_max", "a number of dead-lettered jobs to keep, 0..100000000 (0 = unbounded)", false,
         [](worker_config& c, const std::string& v) { c.dead_letter_max = count(v, 0, 100000000); }},
        {"retry_initial", "a duration such as 500ms", false,
         [](worker_config& c, const std::string& v) { c.retry_initial = duration(v); }},
        {"retry_max", "a duration such as 30s", false,
         [](worker_config& c, const std::string& v) { c.retry_max = duration(v); }},
        {"http_timeout", "a duration such as 10s", false,
         [](worker_config& c, const std::string& v) { c.http_timeout = duration(v); }},
        {"auth_retry_initial", "a duration such as 30s", false,
         [](worker_config& c, const std::string& v) { c.auth_retry_initial = duration(v); }},
        {"auth_retry_max", "a duration such as 10m", false,
         [](worker_config& c, const std::string& v) { c.auth_retry_max = duration(v); }},
        {"thingsboard_url", "http(s)://host[:port]", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.url = http_url(v); }},
        {"thingsboard_username", "the tenant administrator's login", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.username = v; }},
        {"thingsboard_password", "the tenant administrator's password", true,
         [](worker_config& c, const std::string& v) { c.thingsboard.password = v; }},
        {"thingsboard_device_profile", "the name of an existing device profile (empty: the tenant's default)", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.device_profile = profile_name(v); }},
        // The old name of thingsboard_device_profile (it used to be sent as the device's `type`,
        // which ThingsBoard finds *or creates*: DeviceProfileServiceImpl.findOrCreateDeviceProfile).
        {"thingsboard_device_type", "the name of an existing device profile", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.device_profile = profile_name(v); }},
        {"thingsboard_customer", "a customer title or customer id (empty: no assignment)", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.customer = bounded(v, 255); }},
        {"thingsboard_label", "a label template up to 255 characters, {device_id} and {serial} replaced", false,
         [](worker_config& c, const std::string& v) {
             c.thingsboard.label = bounded(v, 255);
             expand_label(v, "", "");  // unknown placeholders are refused now, not per job
         }},
        {"thingsboard_rule_engine", "on or off", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.rule_engine = parse_on_off(v); }},
        {"thingsboard_rule_engine_timeout", "a duration such as 5s", false,
         [](worker_config& c, const std::string& v) { c.thingsboard.rule_engine_timeout = duration(v); }},
        {"hawkbit_target_type", "the name of an existing target type (empty: none)", false,
         [](worker_config& c, const std::string& v) { c.hawkbit.target_type = bounded(v, 128); }},
        {"decommission_mode", "delete or keep", false,
         [](worker_config& c, const std::string& v) {
             if (v != "delete" && v != "keep") throw std::invalid_argument("not delete or keep");
             c.decommission = v == "keep" ? decommission_mode::keep : decommission_mode::delete_;
         }},
        {"hawkbit_url", "http(s)://host[:port]", false,
         [](worker_config& c, const std::string& v) { c.hawkbit.url = http_url(v); }},
        {"hawkbit_username", "a Management API user", false,
         [](worker_config& c, const std::string& v) { c.hawkbit.username = v; }},
        {"hawkbit_password", "that user's password", true,
         [](worker_config& c, const std::string& v) { c.hawkbit.password = v; }},
        {"tenant_ca_file", "the tenant Sub-CA certificate file (PEM), as the brokers' plugin_opt_tenant_ca_file", false,
         [](worker_config& c, const std::string& v) { c.tenant_ca_file = path(v); }},
        {"ica_file", "the ICA certificate file (PEM)", false,
         [](worker_config& c, const std::string& v) { c.ica_file = path(v); }},
        {"root_ca_file", "the Root certificate file (PEM)", false,
         [](worker_config& c, const std::string& v) { c.root_ca_file = path(v); }},
        {"clock_skew", "a duration up to 1h such as 60s", false,
         [](worker_config& c, const std::string& v) {
             c.clock_skew = std::chrono::duration_cast<std::chrono::seconds>(
                 parse_duration_in(v, std::chrono::milliseconds(0), std::chrono::hours(1)));
         }},
        {"metrics_listen", "host:port, or off", false,
         [](worker_config& c, const std::string& v) {
             if (v != "off") {
                 auto colon = v.rfind(':');
                 if (colon == std::string::npos || colon == 0) throw std::invalid_argument("not host:port");
                 count(v.substr(colon + 1), 0, 65535);
             }
             c.metrics_listen = v;
         }},
        {"log_level", "info, notice or warning", false,
         [](worker_config& c, const std::string& v) {
             if (v != "info" && v != "notice" && v != "warning") throw std::invalid_argument("unknown level");
             c.log_level = v;
         }},
    };
    return all;
}

}  // namespace

std::string expand_label(const std::string& label_template, const std::string& device_id, const std::string& serial_hex) {
    std::string out;
    for (std::size_t i = 0; i < label_template.size();) {
        if (label_template[i] != '{') {
            out += label_template[i++];
            continue;
        }
        const auto close = label_template.find('}', i);
        const std::string name = close == std::string::npos ? "" : label_template.substr(i + 1, close - i - 1);
        if (name == "device_id") out += device_id;
        else if (name == "serial") out += serial_hex;
        else throw std::invalid_argument("unknown placeholder (only {device_id} and {serial})");
        i = close + 1;
    }
    return out.substr(0, 255);  // Device.label: @Length(255)
}

namespace {

std::string env_name(const char* key) { return settings_env_name("DEVICEGATE_", key); }

void apply(worker_config& c, const setting& s, const std::string& value, const std::string& where) {
    try {
        s.set(c, value);
    } catch (const std::exception&) {
        // Never repeat the value: it may be a secret.
        throw worker_config_error(where + ": bad value; expected " + s.form);
    }
}

}  // namespace

worker_config parse_worker_config(const std::string& file_text, const std::map<std::string, std::string>& env) {
    worker_config c;
    std::vector<std::string> keys;
    for (const setting& s : settings()) keys.push_back(s.key);
    read_settings(file_text, env, keys, "DEVICEGATE_", [&](const std::string& key, const std::string& value, const std::string& where) {
        auto it = std::find_if(settings().begin(), settings().end(), [&](const setting& s) { return key == s.key; });
        if (it == settings().end()) throw worker_config_error(where + ": unknown setting");
        apply(c, *it, value, where);
    });
    if (c.consumer_name.empty()) {
        char host[256] = {};
        gethostname(host, sizeof host - 1);
        c.consumer_name = host[0] ? host : "worker";
    }
    auto required = [](const std::string& value, const char* key) {
        if (value.empty()) throw worker_config_error(std::string(key) + ": required (or " + env_name(key) + ")");
    };
    required(c.thingsboard.url, "thingsboard_url");
    required(c.thingsboard.username, "thingsboard_username");
    required(c.thingsboard.password, "thingsboard_password");
    required(c.hawkbit.url, "hawkbit_url");
    required(c.hawkbit.username, "hawkbit_username");
    required(c.hawkbit.password, "hawkbit_password");
    if (c.retry_max < c.retry_initial) throw worker_config_error("retry_max: must not be shorter than retry_initial");
    required(c.tenant_ca_file, "tenant_ca_file");
    required(c.ica_file, "ica_file");
    required(c.root_ca_file, "root_ca_file");
    try {
        c.trust = tenant_trust::load(c.tenant_ca_file, c.ica_file, c.root_ca_file);
    } catch (const std::exception& e) {
        throw worker_config_error(std::string("tenant_ca_file, ica_file, root_ca_file: ") + e.what());
    }
    if (c.auth_retry_max < c.auth_retry_initial) {
        throw worker_config_error("auth_retry_max: must not be shorter than auth_retry_initial");
    }
    return c;
}

std::string worker_config::describe() const {
    std::ostringstream out;
    out << "redis=" << redis.describe() << (redis.password.empty() ? "" : " (password set)") << " prefix=" << redis_prefix
        << " group=" << consumer_group << " consumer=" << consumer_name << " concurrency=" << concurrency
        << " claim_idle=" << claim_idle.count() << "ms max_deliveries=" << max_deliveries
        << " max_attempts=" << max_attempts << " retry=" << retry_initial.count() << ".." << retry_max.count()
        << "ms http_timeout=" << http_timeout.count() << "ms auth_retry=" << auth_retry_initial.count() << ".."
        << auth_retry_max.count() << "ms thingsboard=" << thingsboard.url
        << " (user " << thingsboard.username << ", password set, profile "
        << (thingsboard.device_profile.empty() ? "(tenant default)" : "'" + thingsboard.device_profile + "'")
        << (thingsboard.customer.empty() ? "" : ", customer '" + thingsboard.customer + "'")
        << (thingsboard.label.empty() ? "" : ", label '" + thingsboard.label + "'")
        << ", rule engine " << (thingsboard.rule_engine ? "on" : "off") << ") hawkbit=" << hawkbit.url << " (user "
        << hawkbit.username << ", password set"
        << (hawkbit.target_type.empty() ? "" : ", target type '" + hawkbit.target_type + "'") << ") decommission="
        << (decommission == decommission_mode::keep ? "keep" : "delete") << " tenant_ca=" << tenant_ca_file << " ica=" << ica_file
        << " root_ca=" << root_ca_file << " clock_skew=" << clock_skew.count() << "s metrics=" << metrics_listen;
    return out.str();
}

}  // namespace devicegate::worker
