#include "bridge_config.hpp"
#include "rate_limiter.hpp"
#include "service.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::bridge;

namespace {
const std::string minimal = R"(
tls_cert /etc/bridge/tls.crt
tls_key /etc/bridge/tls.key
sub_ca_file /pki/subca.crt
ica_file /pki/ica.crt
root_file /pki/root.crt
ca_key_file /pki/subca.key
state_dir /var/lib/devicegate-bridge
wg_pool 10.80.0.0/16
wg_gateway_public_key hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=
wg_endpoint gw.example.com:51820
wg_allowed_ips 10.80.0.0/16
)";
}

TEST_CASE("bridge config: a minimal file, defaults, and the environment wins", "[bridge][config]") {
    auto c = parse_bridge_config(minimal, {});
    CHECK(c.listen == "0.0.0.0:8443");
    CHECK(c.signer == signer_kind::embedded);
    CHECK(c.max_body_bytes == 16384);
    CHECK(c.cert_validity == std::chrono::hours(720));
    auto e = parse_bridge_config(minimal, {{"DEVICEGATE_BRIDGE_LISTEN", "127.0.0.1:9443"},
                                           {"DEVICEGATE_BRIDGE_CERT_VALIDITY", "24h"}});
    CHECK(e.listen == "127.0.0.1:9443");
    CHECK(e.cert_validity == std::chrono::hours(24));
}

TEST_CASE("bridge config: errors name the key and never the value", "[bridge][config]") {
    CHECK_THROWS_WITH(parse_bridge_config("", {}), Catch::Contains("tls_cert: required (or DEVICEGATE_BRIDGE_TLS_CERT)"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "bogus 1\n", {}), Catch::Contains("bogus: unknown setting"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal, {{"DEVICEGATE_BRIDGE_OPERATOR_API_KEY", "short-secret"}}),
                      Catch::Contains("DEVICEGATE_BRIDGE_OPERATOR_API_KEY: bad value") && !Catch::Contains("short-secret"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "redis_url http://:hunter2@host\n", {}),
                      Catch::Contains("redis_url: bad value") && !Catch::Contains("hunter2"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "wg_pool 10.80.0.1/16\n", {}), Catch::Contains("wg_pool: bad value"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "signer stepca\n", {}), Catch::Contains("stepca_url: required"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "max_body_bytes 10\n", {}), Catch::Contains("max_body_bytes: bad value"));
}

TEST_CASE("enroll request: JSON parsing names the problem", "[bridge][request]") {
    CHECK(parse_enroll_request(R"({"csr_pem":"x"})").csr_pem == "x");
    CHECK(parse_enroll_request(R"({"csr_pem":"x","wireguard_public_key":"hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="})")
              .wireguard_public_key == "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=");
    CHECK_THROWS_WITH(parse_enroll_request("{"), "the body is not JSON");
    CHECK_THROWS_WITH(parse_enroll_request("[]"), "the body must be a JSON object");
    CHECK_THROWS_WITH(parse_enroll_request("{}"), Catch::Contains("csr_pem"));
    CHECK_THROWS_WITH(parse_enroll_request(R"({"csr_pem":1})"), Catch::Contains("csr_pem"));
    CHECK_THROWS_WITH(parse_enroll_request(R"({"csr_pem":"x","wireguard_public_key":"abc"})"),
                      Catch::Contains("wireguard_public_key"));
}

TEST_CASE("bearer tokens and the rate limiter", "[bridge][request]") {
    CHECK(bearer_token("Bearer abc") == "abc");
    CHECK(bearer_token("bearer abc") == "abc");
    CHECK(bearer_token("Basic abc") == "");
    CHECK(bearer_token("Bearer ") == "");
    rate_limiter limiter(3);
    auto t0 = rate_limiter::clock::now();
    CHECK(limiter.allow("a", t0));
    CHECK(limiter.allow("a", t0));
    CHECK(limiter.allow("a", t0));
    CHECK_FALSE(limiter.allow("a", t0));
    CHECK(limiter.allow("b", t0));  // per source
    CHECK(limiter.allow("a", t0 + std::chrono::seconds(21)));  // one more after 20 s at 3/min
    CHECK_FALSE(limiter.allow("a", t0 + std::chrono::seconds(21)));
}

TEST_CASE("bridge config: the CRLs renewal checks, with the plugin's names; step-ca's CRL by default", "[bridge][config]") {
    auto none = parse_bridge_config(minimal, {});
    CHECK_FALSE(none.crl.any());
    CHECK(none.crl.grace == std::chrono::hours(24));
    CHECK(none.crl.stale == devicegate::stale_policy::deny);
    auto c = parse_bridge_config(minimal + "crl_file /pki/a.crl\ncrl_file /pki/b.crl\ncrl_url http://ca:8080/crl\ncrl_grace 1h\n"
                                           "crl_stale_policy allow\ncrl_refresh 5m\ncrl_fetch_timeout 2s\n",
                                 {});
    CHECK(c.crl.files == std::vector<std::string>{"/pki/a.crl", "/pki/b.crl"});
    CHECK(c.crl.urls == std::vector<std::string>{"http://ca:8080/crl"});
    CHECK(c.crl.grace == std::chrono::hours(1));
    CHECK(c.crl.stale == devicegate::stale_policy::allow);
    CHECK(c.crl.refresh == std::chrono::minutes(5));
    CHECK(c.crl.fetch_timeout == std::chrono::seconds(2));
    const std::string stepca = minimal + "signer stepca\nstepca_url https://ca.example.com:9000/\nstepca_root_file /r\n"
                                         "stepca_provisioner p\nstepca_key_file /k\n";
    CHECK(parse_bridge_config(stepca, {}).crl.urls == std::vector<std::string>{"https://ca.example.com:9000/1.0/crl"});
    // An explicit source replaces the default.
    auto file_only = parse_bridge_config(stepca + "crl_file /pki/a.crl\n", {});
    CHECK(file_only.crl.urls.empty());
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "crl_file relative.crl\n", {}), Catch::Contains("crl_file: bad value"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "crl_url ftp://x/crl\n", {}), Catch::Contains("crl_url: bad value"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "crl_grace 721h\n", {}), Catch::Contains("crl_grace: bad value"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "crl_stale_policy maybe\n", {}), Catch::Contains("crl_stale_policy: bad value"));
    CHECK_THROWS_WITH(parse_bridge_config(minimal + "crl_refresh 0s\n", {}), Catch::Contains("crl_refresh: bad value"));
}
