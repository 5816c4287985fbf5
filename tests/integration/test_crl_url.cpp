// CRLs fetched over HTTP by the plugin, through the real broker.
#include "../../bench/big_crl.hpp"
#include "cert_factory.hpp"
#include "harness.hpp"
#include "http_server.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace devicegate::itest;
using devicegate::test::http_server;

namespace {
constexpr int not_authorized = 135;

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
}  // namespace

TEST_CASE("a CRL URL: a refresh that adds a serial disconnects the device; 404 and garbage keep the old CRL",
          "[integration][crl_url]") {
    http_server server;
    server.set("/subca.crl", {200, slurp(pki("subca-a.crl.pem")), "\"1\""});
    broker b({.plugin_opts = {{"crl_url", server.url("/subca.crl")}, {"crl_refresh", "1s"}}, .crl_files = {}});
    REQUIRE(b.start());
    CHECK(b.log_contains("devicegate: crl loaded url=" + server.url("/subca.crl")));
    auto victim = device("dev-002");
    REQUIRE(victim->connect(b.port()) == 0);
    CHECK(device("dev-revoked")->connect(b.port()) == not_authorized);

    SECTION("a new CRL revoking a connected device") {
        server.set("/subca.crl", {200, slurp(pki("subca-a-revokes-dev-002.crl.der")), "\"2\""});
        CHECK(victim->wait_disconnected(5s));
        CHECK(b.wait_for_log("devicegate: kick client=dev-002 reason=revoked_crl"));
        CHECK(device("dev-002")->connect(b.port()) == not_authorized);
    }
    SECTION("404, then garbage, then another CA's CRL") {
        server.set("/subca.crl", {404, "no CRL available", ""});
        CHECK(b.wait_for_log("crl_rejected url=" + server.url("/subca.crl") + " cause=\"HTTP 404\""));
        server.set("/subca.crl", {200, "garbage", "\"g\""});
        CHECK(b.wait_for_log("neither PEM nor valid DER CRL"));
        server.set("/subca.crl", {200, slurp(pki("subca-b.crl.pem")), "\"b\""});
        CHECK(b.wait_for_log("none of the configured Sub-CA, ICA or Root"));
        CHECK(victim->connected());
        CHECK(device("dev-revoked")->connect(b.port()) == not_authorized);  // the old CRL is in force
        CHECK(device("dev-001")->connect(b.port()) == 0);
    }
    // Conditional requests: the unchanged CRL was not sent again.
    bool conditional = false;
    for (const auto& r : server.requests()) conditional = conditional || r.if_none_match == "\"1\"";
    CHECK(conditional);
}

TEST_CASE("CRL Distribution Points of device certificates are followed", "[integration][crl_url]") {
    http_server server;
    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    auto dir = test_dir();
    auto cert = factory.issue(dir, "dev-with-cdp", server.url("/cdp.crl"));
    // The CRL behind the distribution point revokes that very device.
    devicegate::bench::write_big_crl(pki("subca-a.crt"), pki("subca-a.key"), 0, {X509_get0_serialNumber(cert.get())},
                                     (dir / "cdp.crl").string());
    server.set("/cdp.crl", {200, slurp((dir / "cdp.crl").string()), ""});
    broker b({.plugin_opts = {{"crl_distribution_points", "on"}, {"crl_refresh", "1s"}}});
    REQUIRE(b.start());
    client dev("dev-with-cdp", (dir / "dev-with-cdp.crt").string(), (dir / "dev-with-cdp.key").string());
    REQUIRE(dev.connect(b.port()) == 0);  // nothing known against it yet
    CHECK(b.wait_for_log("crl url learned from a device certificate's CRL Distribution Points: " + server.url("/cdp.crl")));
    CHECK(dev.wait_disconnected(5s));
    CHECK(b.wait_for_log("devicegate: kick client=dev-with-cdp reason=revoked_crl"));
}
