// Revocation while devices are connected: CRL file updates, SIGHUP, garbage CRLs.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>

using namespace devicegate::itest;

namespace {
constexpr int not_authorized = 135;
}

TEST_CASE("a CRL update disconnects a newly revoked device within 2 seconds and refuses its reconnect",
          "[integration]") {
    auto dir = test_dir();
    auto crl = dir / "subca.crl";
    replace_file(crl, pki("subca-a.crl.pem"));
    broker b({.plugin_opts = {{"crl_poll_interval", "500ms"}}, .crl_files = {crl.string()}});
    REQUIRE(b.start());
    auto victim = device("dev-002");
    auto bystander = device("dev-001");
    REQUIRE(victim->connect(b.port()) == 0);
    REQUIRE(bystander->connect(b.port()) == 0);

    auto revoked_at = clock::now();
    replace_file(crl, pki("subca-a-revokes-dev-002.crl.der"));  // DER works as well as PEM
    REQUIRE(victim->wait_disconnected(5s));
    auto latency = victim->disconnected_at() - revoked_at;
    CHECK(latency < 2s);
    WARN("CRL file replaced -> device disconnected in "
         << std::chrono::duration_cast<std::chrono::milliseconds>(latency).count() << " ms");
    CHECK(b.wait_for_log("devicegate: kick client=dev-002 reason=revoked_crl"));
    CHECK(bystander->connected());

    auto again = device("dev-002");
    CHECK(again->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-002 reason=revoked_crl"));
}

TEST_CASE("SIGHUP re-reads the CRL files at once", "[integration]") {
    auto dir = test_dir();
    auto crl = dir / "subca.crl";
    replace_file(crl, pki("subca-a.crl.pem"));
    // A poll interval of an hour: only the reload can explain a quick kick.
    broker b({.plugin_opts = {{"crl_poll_interval", "1h"}}, .crl_files = {crl.string()}});
    REQUIRE(b.start());
    auto victim = device("dev-002");
    REQUIRE(victim->connect(b.port()) == 0);
    replace_file(crl, pki("subca-a-revokes-dev-002.crl.pem"));
    CHECK_FALSE(victim->wait_disconnected(1500ms));
    b.signal(SIGHUP);
    CHECK(victim->wait_disconnected(3s));
    CHECK(b.wait_for_log("reload requested (SIGHUP)"));
    // mosquitto re-authenticates connected clients on reload, so whichever comes first
    // disconnects the device: that re-check (if the new CRL is already in force) or the kick.
    CHECK(eventually([&] {
        return b.log_contains("devicegate: kick client=dev-002 reason=revoked_crl") ||
               b.log_contains("devicegate: deny client=dev-002 reason=revoked_crl");
    }));
}

TEST_CASE("a bad CRL file leaves the last good CRL in force", "[integration]") {
    auto dir = test_dir();
    auto crl = dir / "subca.crl";
    replace_file(crl, pki("subca-a.crl.pem"));
    broker b({.plugin_opts = {{"crl_poll_interval", "200ms"}}, .crl_files = {crl.string()}});
    REQUIRE(b.start());
    auto connected = device("dev-001");
    REQUIRE(connected->connect(b.port()) == 0);

    SECTION("garbage") {
        write_text(crl, "garbage, not a CRL\n");
        CHECK(b.wait_for_log("devicegate: crl_rejected file=" + crl.string()));
        CHECK(b.log_contains("neither PEM nor valid DER CRL"));
    }
    SECTION("a CRL signed by another tenant's Sub-CA") {
        replace_file(crl, pki("subca-b.crl.pem"));
        CHECK(b.wait_for_log("is none of the configured Sub-CA, ICA or Root"));
    }
    SECTION("a CRL carrying our Sub-CA's name, signed by another key") {
        replace_file(crl, pki("subca-a-forged.crl.pem"));
        CHECK(b.wait_for_log("CRL signature does not verify against the tenant Sub-CA"));
    }
    // The old CRL still refuses its revoked device, and the broker keeps serving.
    auto revoked = device("dev-revoked");
    CHECK(revoked->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-revoked reason=revoked_crl"));
    CHECK(connected->connected());
    auto fresh = device("dev-003");
    CHECK(fresh->connect(b.port()) == 0);
}

TEST_CASE("revoking the Sub-CA on the ICA's CRL disconnects every device", "[integration]") {
    auto dir = test_dir();
    auto ica_crl = dir / "ica.crl";
    replace_file(ica_crl, pki("ica.crl.pem"));
    broker b({.plugin_opts = {{"crl_poll_interval", "200ms"}}, .crl_files = {pki("subca-a.crl.pem"), ica_crl.string()}});
    REQUIRE(b.start());
    auto d1 = device("dev-001");
    auto d3 = device("dev-003");
    REQUIRE(d1->connect(b.port()) == 0);
    REQUIRE(d3->connect(b.port()) == 0);
    replace_file(ica_crl, pki("ica-revokes-subca-a.crl.pem"));
    CHECK(d1->wait_disconnected(3s));
    CHECK(d3->wait_disconnected(3s));
    CHECK(b.wait_for_log("devicegate: kick client=dev-001 reason=ca_revoked"));
    auto again = device("dev-001");
    CHECK(again->connect(b.port()) == not_authorized);
}
