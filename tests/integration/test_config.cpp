// The broker refuses to start on bad plugin configuration, and reports listeners that
// would bypass the plugin.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;

namespace {
void refuses_to_start(broker_options options, const std::string& expected_log) {
    broker b(std::move(options));
    CHECK_FALSE(b.start());
    auto status = b.wait_exit(5s);
    REQUIRE(status);
    CHECK(*status != 0);
    CHECK(b.log_contains("devicegate: refusing to start: "));
    CHECK(b.log_contains(expected_log));
}
}  // namespace

TEST_CASE("a bad plugin option stops the broker with a message naming it", "[integration]") {
    refuses_to_start({.plugin_opts = {{"crl_pol_interval", "1s"}}},
                     "refusing to start: plugin_opt_crl_pol_interval: unknown option");
    refuses_to_start({.plugin_opts = {{"crl_poll_interval", "soon"}}},
                     "plugin_opt_crl_poll_interval: \"soon\" is not a duration such as 500ms, 30s, 5m or 24h");
    refuses_to_start({.plugin_opts = {{"acl_pattern", "all devices/#"}}},
                     "plugin_opt_acl_pattern: \"all devices/#\": access must be read, write or readwrite");
    refuses_to_start({.crl_files = {}}, "plugin_opt_crl_file: missing");
    refuses_to_start({.plugin_opts = {{"broker_heartbeat_interval", "10s"}}},
                     "plugin_opt_broker_heartbeat_timeout: must be at least twice broker_heartbeat_interval");
    refuses_to_start({.plugin_opts = {{"clone_policy", "ban"}}}, "plugin_opt_clone_policy: \"ban\" is not log or refuse");
    refuses_to_start({.crl_files = {"/nonexistent/subca.crl"}}, "/nonexistent/subca.crl: cannot stat");
    refuses_to_start({.crl_files = {pki("subca-a.crt")}}, "no PEM CRL found");
    refuses_to_start({.crl_files = {pki("subca-b.crl.pem")}}, "is none of the configured Sub-CA, ICA or Root");
    refuses_to_start({.plugin_opts = {{"redis_url", "redis://fd00::5:6379"}}},
                     "an IPv6 address needs brackets: [fd00::5:6379]");
}

TEST_CASE("a listener that would bypass the plugin is refused, or reported and contained", "[integration]") {
    SECTION("enforce (default): the broker does not start") {
        broker b({.listener_extra = "use_identity_as_username true"});
        CHECK_FALSE(b.start());
        CHECK(b.log_contains("devicegate: listener_check: BYPASS"));
        CHECK(b.log_contains("use_identity_as_username true: mosquitto 2.0 skips MOSQ_EVT_BASIC_AUTH"));
        CHECK(b.log_contains("plugin_opt_listener_check: mosquitto.conf has settings that would bypass DeviceGate"));
    }
    SECTION("warn: it starts, and every publish of a client the plugin never admitted is denied") {
        broker b({.plugin_opts = {{"listener_check", "warn"}}, .listener_extra = "use_identity_as_username true"});
        REQUIRE(b.start());
        CHECK(b.log_contains("devicegate: listener_check: BYPASS"));
        auto c = device("tenant-b-dev", "", pki("devices/tenant-b-dev-chain.crt"));
        REQUIRE(c->connect(b.port()) == 0);  // mosquitto admitted it without asking the plugin
        CHECK(c->publish("devices/tenant-b-dev/x", "1") == 135);
        CHECK(b.wait_for_log("reason=not_authenticated access=publish"));
    }
}
