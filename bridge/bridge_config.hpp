#pragma once
// devicegate-bridge's typed configuration: one "key value" file (bridge/devicegate-bridge.conf.example)
// and environment variables DEVICEGATE_BRIDGE_<KEY> (upper case) that override it, for containers.
// Parsed and validated once at start; errors name the key, never the value (it may be a secret).
#include "devicegate/config.hpp"  // stale_policy
#include "devicegate/redis.hpp"

#include <chrono>
#include <cstddef>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace devicegate::bridge {

struct bridge_config_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class signer_kind { embedded, stepca };

struct wireguard_settings {
    std::string pool;                 // CIDR, e.g. 10.80.0.0/16; the first host is the gateway's
    std::string gateway_public_key;   // base64 X25519 public key of the tenant gateway
    std::string endpoint;             // host:port of the gateway
    std::string allowed_ips;          // routed through the tunnel, e.g. 10.80.0.0/16
    std::string dns;                  // optional
    int keepalive = 25;               // PersistentKeepalive, seconds
    bool generate_keys = true;        // make an X25519 pair when the device sends no public key
};

struct stepca_settings {
    std::string url;            // https://ca.example.com:9000 (no trailing slash)
    std::string root_file;      // the step-ca root, to verify its TLS certificate
    std::string provisioner;    // JWK provisioner name (the token's iss)
    std::string key_file;       // the provisioner's private key (PEM, unencrypted): a secret
    std::string kid;            // the provisioner key's kid (default: its RFC 7638 thumbprint)
};

/// The CRLs that renewal checks, as the brokers do (the plugin's crl_file, crl_url, crl_refresh,
/// crl_fetch_timeout, crl_grace, crl_stale_policy, with the same meaning and defaults).
struct crl_settings {
    std::vector<std::string> files;   // PEM or DER, verified against the tenant chain
    std::vector<std::string> urls;    // http(s); signer stepca without files or urls: {stepca_url}/1.0/crl
    std::chrono::milliseconds refresh{std::chrono::minutes(15)};
    std::chrono::milliseconds fetch_timeout{std::chrono::seconds(10)};
    std::chrono::seconds grace{std::chrono::hours(24)};
    stale_policy stale = stale_policy::deny;
    bool any() const noexcept { return !files.empty() || !urls.empty(); }
};

struct bridge_config {
    std::string listen = "0.0.0.0:8443";
    std::string crl_listen;               // host:port of a plain-HTTP listener serving GET /crl only ("" = none)
    std::string tls_cert;                 // the API's server certificate (chain) file
    std::string tls_key;                  // its key: a secret path
    std::string sub_ca_file, ica_file, root_file;  // the tenant chain (ca_chain_pem)
    signer_kind signer = signer_kind::embedded;
    std::string ca_key_file;              // embedded: the Sub-CA key
    std::string state_dir;                // embedded: index of serials and the CRL
    std::chrono::milliseconds cert_validity{std::chrono::hours(24 * 30)};
    std::chrono::milliseconds crl_validity{std::chrono::hours(24)};
    redis_options redis;
    std::string redis_prefix = "devicegate:";
    std::string operator_api_key;         // secret; empty = no operator API
    std::size_t max_body_bytes = 16384;
    std::size_t rate_limit = 30;          // requests per minute per source address
    std::size_t threads = 8;
    bool enqueue_registration = true;     // hawkBit/ThingsBoard job at enrollment
    wireguard_settings wireguard;
    stepca_settings stepca;
    crl_settings crl;                     // renewal's revocation check (bridge/renewal_crls.hpp)
    std::string log_level = "info";

    /// Every setting without secrets.
    std::string describe() const;
};

/// The environment variable of a key: DEVICEGATE_BRIDGE_<KEY>.
std::string bridge_env_name(const std::string& key);

/// `file_text`: the config file's contents ("" for none); `env`: the process environment.
bridge_config parse_bridge_config(const std::string& file_text, const std::map<std::string, std::string>& env);

}  // namespace devicegate::bridge
