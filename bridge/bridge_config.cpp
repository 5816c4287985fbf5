#include "bridge_config.hpp"

#include "devicegate/settings_file.hpp"

#include "devicegate/config.hpp"
#include "wireguard.hpp"

#include <algorithm>
#include <functional>
#include <sstream>
#include <vector>

namespace devicegate::bridge {

namespace {

struct setting {
    const char* key;
    const char* form;
    std::function<void(bridge_config&, const std::string&)> set;
};

std::size_t count(const std::string& v, std::size_t min, std::size_t max) {
    std::size_t used = 0;
    unsigned long long n = std::stoull(v, &used);
    if (used != v.size() || n < min || n > max || v[0] == '-') throw std::invalid_argument("out of range");
    return static_cast<std::size_t>(n);
}

std::chrono::milliseconds duration(const std::string& v, std::chrono::milliseconds min) {
    return parse_duration_in(v, min, std::chrono::milliseconds::max());
}

std::string non_empty(const std::string& v) {
    if (v.empty()) throw std::invalid_argument("empty");
    return v;
}

std::string host_port(const std::string& v) {
    auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0) throw std::invalid_argument("not host:port");
    count(v.substr(colon + 1), 1, 65535);
    return v;
}

bool on_off(const std::string& v) {
    if (v == "on" || v == "true") return true;
    if (v == "off" || v == "false") return false;
    throw std::invalid_argument("not on/off");
}


std::vector<setting> server_settings() {
    return {
        {"listen", "host:port", [](bridge_config& c, const std::string& v) { c.listen = host_port(v); }},
        {"crl_listen", "host:port (plain HTTP, GET /crl only)",
         [](bridge_config& c, const std::string& v) { c.crl_listen = host_port(v); }},
        {"tls_cert", "a PEM certificate (chain) file", [](bridge_config& c, const std::string& v) { c.tls_cert = non_empty(v); }},
        {"tls_key", "a PEM key file", [](bridge_config& c, const std::string& v) { c.tls_key = non_empty(v); }},
        {"sub_ca_file", "the tenant Sub-CA certificate file", [](bridge_config& c, const std::string& v) { c.sub_ca_file = non_empty(v); }},
        {"ica_file", "the provider ICA certificate file", [](bridge_config& c, const std::string& v) { c.ica_file = non_empty(v); }},
        {"root_file", "the provider Root certificate file", [](bridge_config& c, const std::string& v) { c.root_file = non_empty(v); }},
        {"signer", "embedded or stepca",
         [](bridge_config& c, const std::string& v) {
             if (v == "embedded") c.signer = signer_kind::embedded;
             else if (v == "stepca") c.signer = signer_kind::stepca;
             else throw std::invalid_argument("unknown signer");
         }},
        {"ca_key_file", "the Sub-CA's PEM key file", [](bridge_config& c, const std::string& v) { c.ca_key_file = non_empty(v); }},
        {"state_dir", "a writable directory", [](bridge_config& c, const std::string& v) { c.state_dir = non_empty(v); }},
        {"cert_validity", "a duration of at least 5m such as 720h",
         [](bridge_config& c, const std::string& v) { c.cert_validity = duration(v, std::chrono::minutes(5)); }},
        {"crl_validity", "a duration of at least 1m such as 24h",
         [](bridge_config& c, const std::string& v) { c.crl_validity = duration(v, std::chrono::minutes(1)); }},
        {"redis_url", "redis://[:password@]host[:port][/db] or redis-sentinel://[:password@]host[:port][,host[:port]...]/master_name[/db][?sentinel_password=P]",
         [](bridge_config& c, const std::string& v) { c.redis = redis_options::parse_url(v); }},
        {"redis_prefix", "a key prefix such as devicegate:", [](bridge_config& c, const std::string& v) { c.redis_prefix = non_empty(v); }},
        {"operator_api_key", "a secret of at least 16 characters",
         [](bridge_config& c, const std::string& v) {
             if (v.size() < 16) throw std::invalid_argument("too short");
             c.operator_api_key = v;
         }},
        {"max_body_bytes", "a number of bytes, 1024..1048576",
         [](bridge_config& c, const std::string& v) { c.max_body_bytes = count(v, 1024, 1 << 20); }},
        {"rate_limit", "requests per minute per source address, 1..100000",
         [](bridge_config& c, const std::string& v) { c.rate_limit = count(v, 1, 100000); }},
        {"threads", "a number of request threads, 1..256", [](bridge_config& c, const std::string& v) { c.threads = count(v, 1, 256); }},
        {"enqueue_registration", "on or off", [](bridge_config& c, const std::string& v) { c.enqueue_registration = on_off(v); }},
        {"log_level", "info, notice or warning",
         [](bridge_config& c, const std::string& v) {
             if (v != "info" && v != "notice" && v != "warning") throw std::invalid_argument("unknown level");
             c.log_level = v;
         }},
    };
}

// The plugin's names, forms and ranges (core/src/config.cpp), so one CRL setup reads the same
// in mosquitto.conf and here.
std::vector<setting> crl_settings_table() {
    using std::chrono::hours;
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    return {
        {"crl_file", "an absolute CRL file path (PEM or DER), repeatable",
         [](bridge_config& c, const std::string& v) {
             if (v.empty() || v.front() != '/') throw std::invalid_argument("not absolute");
             c.crl.files.push_back(v);
         }},
        {"crl_url", "an http(s) URL, repeatable", [](bridge_config& c, const std::string& v) { c.crl.urls.push_back(parse_http_url(v)); }},
        {"crl_refresh", "a duration 1s..24h", [](bridge_config& c, const std::string& v) { c.crl.refresh = parse_duration_in(v, seconds(1), hours(24)); }},
        {"crl_fetch_timeout", "a duration 100ms..60s",
         [](bridge_config& c, const std::string& v) { c.crl.fetch_timeout = parse_duration_in(v, milliseconds(100), seconds(60)); }},
        {"crl_grace", "a duration 0..30 days such as 24h",
         [](bridge_config& c, const std::string& v) {
             c.crl.grace = std::chrono::duration_cast<seconds>(parse_duration_in(v, milliseconds(0), hours(24 * 30)));
         }},
        {"crl_stale_policy", "deny or allow", [](bridge_config& c, const std::string& v) { c.crl.stale = parse_stale_policy(v); }},
    };
}

std::vector<setting> wireguard_and_stepca_settings() {
    return {
        {"wg_pool", "an IPv4 CIDR such as 10.80.0.0/16",
         [](bridge_config& c, const std::string& v) {
             parse_pool(v);
             c.wireguard.pool = v;
         }},
        {"wg_gateway_public_key", "a base64 WireGuard public key",
         [](bridge_config& c, const std::string& v) {
             if (!is_wireguard_key(v)) throw std::invalid_argument("not a key");
             c.wireguard.gateway_public_key = v;
         }},
        {"wg_endpoint", "host:port", [](bridge_config& c, const std::string& v) { c.wireguard.endpoint = host_port(v); }},
        {"wg_allowed_ips", "comma-separated CIDRs", [](bridge_config& c, const std::string& v) { c.wireguard.allowed_ips = non_empty(v); }},
        {"wg_dns", "comma-separated addresses", [](bridge_config& c, const std::string& v) { c.wireguard.dns = v; }},
        {"wg_keepalive", "seconds, 0..3600",
         [](bridge_config& c, const std::string& v) { c.wireguard.keepalive = static_cast<int>(count(v, 0, 3600)); }},
        {"wg_generate_keys", "on or off", [](bridge_config& c, const std::string& v) { c.wireguard.generate_keys = on_off(v); }},
        {"stepca_url", "https://host[:port]",
         [](bridge_config& c, const std::string& v) {
             if (v.rfind("https://", 0) != 0) throw std::invalid_argument("not https");
             c.stepca.url = v;
             while (!c.stepca.url.empty() && c.stepca.url.back() == '/') c.stepca.url.pop_back();
         }},
        {"stepca_root_file", "the step-ca root certificate file", [](bridge_config& c, const std::string& v) { c.stepca.root_file = non_empty(v); }},
        {"stepca_provisioner", "the JWK provisioner's name", [](bridge_config& c, const std::string& v) { c.stepca.provisioner = non_empty(v); }},
        {"stepca_key_file", "the provisioner's PEM private key file", [](bridge_config& c, const std::string& v) { c.stepca.key_file = non_empty(v); }},
        {"stepca_kid", "the provisioner key's kid", [](bridge_config& c, const std::string& v) { c.stepca.kid = non_empty(v); }},
    };
}

const std::vector<setting>& settings() {
    static const std::vector<setting> all = [] {
        auto out = server_settings();
        for (auto more : {wireguard_and_stepca_settings(), crl_settings_table()}) out.insert(out.end(), more.begin(), more.end());
        return out;
    }();
    return all;
}

void apply(bridge_config& c, const setting& s, const std::string& value, const std::string& where) {
    try {
        s.set(c, value);
    } catch (const std::exception&) {
        throw bridge_config_error(where + ": bad value; expected " + s.form);  // never the value
    }
}

void require(const std::string& value, const char* key) {
    if (value.empty()) throw bridge_config_error(std::string(key) + ": required (or " + bridge_env_name(key) + ")");
}

void check_required(const bridge_config& c) {
    require(c.tls_cert, "tls_cert");
    require(c.tls_key, "tls_key");
    require(c.sub_ca_file, "sub_ca_file");
    require(c.ica_file, "ica_file");
    require(c.root_file, "root_file");
    require(c.wireguard.pool, "wg_pool");
    require(c.wireguard.gateway_public_key, "wg_gateway_public_key");
    require(c.wireguard.endpoint, "wg_endpoint");
    require(c.wireguard.allowed_ips, "wg_allowed_ips");
    if (c.signer == signer_kind::embedded) {
        require(c.ca_key_file, "ca_key_file");
        require(c.state_dir, "state_dir");
    } else {
        require(c.stepca.url, "stepca_url");
        require(c.stepca.root_file, "stepca_root_file");
        require(c.stepca.provisioner, "stepca_provisioner");
        require(c.stepca.key_file, "stepca_key_file");
    }
}

}  // namespace

std::string bridge_env_name(const std::string& key) { return settings_env_name("DEVICEGATE_BRIDGE_", key); }

bridge_config parse_bridge_config(const std::string& file_text, const std::map<std::string, std::string>& env) {
    bridge_config c;
    std::vector<std::string> keys;
    for (const setting& s : settings()) keys.push_back(s.key);
    read_settings(file_text, env, keys, "DEVICEGATE_BRIDGE_",
                  [&](const std::string& key, const std::string& value, const std::string& where) {
                      auto it = std::find_if(settings().begin(), settings().end(), [&](const setting& s) { return key == s.key; });
                      if (it == settings().end()) throw bridge_config_error(where + ": unknown setting");
                      apply(c, *it, value, where);
                  });
    check_required(c);
    // step-ca publishes its CRL at /1.0/crl (api/crl.go; docs/integrations.md section C): the
    // CRL the brokers' crl_url follows, so renewal checks it unless told otherwise.
    if (c.signer == signer_kind::stepca && !c.crl.any()) c.crl.urls.push_back(c.stepca.url + "/1.0/crl");
    return c;
}

std::string bridge_config::describe() const {
    std::ostringstream out;
    out << "listen=" << listen << " crl_listen=" << (crl_listen.empty() ? "off" : crl_listen) << " signer=" << (signer == signer_kind::embedded ? "embedded" : "stepca " + stepca.url)
        << " redis=" << redis.describe() << (redis.password.empty() ? "" : " (password set)") << " prefix=" << redis_prefix
        << " cert_validity=" << cert_validity.count() / 1000 << "s max_body_bytes=" << max_body_bytes
        << " rate_limit=" << rate_limit << "/min operator_api=" << (operator_api_key.empty() ? "off" : "on (key set)")
        << " wg_pool=" << wireguard.pool << " wg_endpoint=" << wireguard.endpoint << " crl_files=" << crl.files.size()
        << " crl_urls=" << crl.urls.size() << " crl_grace=" << crl.grace.count() << "s crl_stale_policy="
        << (crl.stale == stale_policy::deny ? "deny" : "allow");
    return out.str();
}

}  // namespace devicegate::bridge
