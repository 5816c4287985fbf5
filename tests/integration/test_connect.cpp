// Every admit and refusal path of a CONNECT, through the real broker.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;

namespace {
constexpr int not_authorized = 135;  // MQTT v5 CONNACK reason code
}

TEST_CASE("a device of this tenant connects, publishes, and a subscriber receives it", "[integration]") {
    broker b({.plugin_opts = {{"acl_pattern", "readwrite devices/%c/#"},
                              {"acl_pattern", "write fleet/%c/telemetry"},
                              {"acl_pattern", "read fleet/+/telemetry"}}});
    REQUIRE(b.start());
    auto sub = device("dev-sub");
    REQUIRE(sub->connect(b.port()) == 0);
    REQUIRE(sub->subscribe("fleet/+/telemetry") == 1);
    auto dev = device("dev-001");
    REQUIRE(dev->connect(b.port()) == 0);
    CHECK(accepted(dev->publish("fleet/dev-001/telemetry", R"({"temperature":21.5})")));
    auto got = sub->wait_message("fleet/dev-001/telemetry");
    REQUIRE(got);
    CHECK(*got == R"({"temperature":21.5})");
    CHECK(b.log_contains("devicegate: allow client=dev-001 serial="));
    CHECK(b.log_contains("u'dev-001'"));  // the plugin set the username to the device id

    SECTION("a reconnect is served from the verify cache") {
        REQUIRE(accepted(dev->publish("devices/dev-001/status", "online")));
        dev.reset();
        auto again = device("dev-001");
        REQUIRE(again->connect(b.port()) == 0);
        CHECK(b.wait_for_log("client=dev-001 serial=" ) );
        CHECK(b.log_contains("cache=hit"));
    }
}

TEST_CASE("refusals decided by the plugin name the client, the reason and the serial", "[integration]") {
    broker b;
    REQUIRE(b.start());
    struct row {
        const char* name;
        const char* client_id;
        const char* cert_file;
        const char* reason;
    };
    const row rows[] = {
        {"tenant-b-dev", "tenant-b-dev", "devices/tenant-b-dev-chain.crt", "wrong_issuer"},
        {"dev-001", "dev-002", nullptr, "client_id_mismatch"},
        {"dev-001", "mosq-random-id", nullptr, "client_id_mismatch"},
        {"dev-bad-cn", "dev+bad#1", nullptr, "bad_device_id"},
        {"dev-san-mismatch", "dev-san-mismatch", nullptr, "bad_device_id"},
        {"dev-ca", "dev-ca", nullptr, "not_end_entity"},
        {"dev-revoked", "dev-revoked", nullptr, "revoked_crl"},
    };
    for (const auto& r : rows) {
        INFO(r.name << " as " << r.client_id << " expecting " << r.reason);
        auto c = device(r.name, r.client_id, r.cert_file ? pki(r.cert_file) : "");
        CHECK(c->connect(b.port()) == not_authorized);
        CHECK(b.wait_for_log(std::string("devicegate: deny client=") + r.client_id + " reason=" + r.reason +
                             " serial="));
    }
    CHECK_FALSE(b.log_contains("devicegate: allow"));
    // The serial in the log is the certificate's, as `openssl x509 -serial` prints it.
    CHECK(b.log_contains("reason=revoked_crl serial=" + serial_of("dev-revoked")));
}

TEST_CASE("a claimed client id cannot add fields to the deny line", "[integration]") {
    // The id of a refused client is the client's own text, logged unquoted: a space in it
    // would start a field of the client's choosing ("... reason=ok ...").
    broker b;
    REQUIRE(b.start());
    auto c = device("dev-001", "victim reason=ok serial=0A01 device=victim");
    CHECK(c->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=victim\\x20reason=ok\\x20serial=0A01\\x20device=victim "
                         "reason=client_id_mismatch serial="));
    CHECK_FALSE(b.log_contains("deny client=victim reason=ok"));
}

TEST_CASE("refusals decided by mosquitto's own TLS check never reach the plugin", "[integration]") {
    // mosquitto verifies the client chain against its cafile before CONNECT: expired, not
    // yet valid, self-signed, foreign-root and serverAuth-only certificates fail the
    // handshake, so the client id is never known. The plugin repeats these checks (unit
    // tests) in case the listener's cafile is wider than the tenant chain.
    broker b;
    REQUIRE(b.start());
    struct row {
        const char* name;
        const char* cert_file;
    };
    const row rows[] = {
        {"dev-expired", nullptr}, {"dev-future", nullptr}, {"dev-self", nullptr},
        {"foreign-dev", "devices/foreign-dev-chain.crt"}, {"dev-eku", nullptr},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        auto c = device(r.name, "", r.cert_file ? pki(r.cert_file) : "");
        CHECK(c->connect(b.port()) == transport_error);
    }
    CHECK(b.wait_for_log("certificate verify failed"));
    CHECK_FALSE(b.log_contains("devicegate: allow"));
}

TEST_CASE("a device under a revoked Sub-CA is refused", "[integration]") {
    broker b({.crl_files = {pki("subca-a.crl.pem"), pki("ica-revokes-subca-a.crl.pem")}});
    REQUIRE(b.start());
    CHECK(b.log_contains("tenant chain revoked"));
    auto c = device("dev-001");
    CHECK(c->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=ca_revoked serial="));
}

TEST_CASE("a CRL past nextUpdate and its grace refuses devices (fail closed), or admits with policy allow",
          "[integration]") {
    SECTION("deny (default)") {
        broker b({.crl_files = {pki("subca-a-stale.crl.pem")}});
        REQUIRE(b.start());
        auto c = device("dev-001");
        CHECK(c->connect(b.port()) == not_authorized);
        CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=crl_stale serial="));
    }
    SECTION("allow") {
        broker b({.plugin_opts = {{"crl_stale_policy", "allow"}}, .crl_files = {pki("subca-a-stale.crl.pem")}});
        REQUIRE(b.start());
        auto c = device("dev-001");
        CHECK(c->connect(b.port()) == 0);
    }
}

TEST_CASE("harness: a broker and a redis-server whose port another process took start on a new one",
          "[integration][harness]") {
    redis_server redis;
    const int redis_port = redis.port();
    broker b({.redis = &redis});
    const int broker_port = b.port();
    {
        port_holder taken_redis(redis_port);
        port_holder taken_broker(broker_port);
        REQUIRE(redis.start());
        REQUIRE(b.start());
    }
    CHECK(redis.port() != redis_port);
    CHECK(b.port() != broker_port);
    CHECK(std::filesystem::exists(b.dir() / "mosquitto.log.lost-port"));
    CHECK_FALSE(b.log_contains("Address already in use"));  // the lost attempt's lines are set aside
    CHECK(device("dev-001")->connect(b.port()) == 0);
}
