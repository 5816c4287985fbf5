// Revocation that cannot be fooled by whoever writes a CRL file, serves a CRL URL or answers
// OCSP (issue 11, findings 1-4), through the real broker: CRLs kept per issuing CA, rollbacks
// refused across restarts, future-dated CRLs refused, bounded CRL bodies, and OCSP answers
// signed by an expired delegated responder refused.
#include "../../bench/big_crl.hpp"
#include "crl_factory.hpp"
#include "harness.hpp"
#include "http_server.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace devicegate::itest;
using devicegate::test::http_server;

namespace {
constexpr int not_authorized = 135;
constexpr std::size_t crl_max_bytes_default = 64u << 20;  // plugin_opt_crl_max_bytes

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A line of /proc/<pid>/status in KiB (VmHWM: peak resident set, VmRSS: current).
long status_kib(pid_t pid, const std::string& field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
    }
    return -1;
}

int connect_as(const std::string& name, const broker& b) { return device(name)->connect(b.port()); }

// A started broker whose CRL URL answers 404 (retried every 200ms) until the test serves a body.
struct url_broker {
    http_server server;
    std::unique_ptr<broker> b;
    url_broker() {
        server.set("/subca.crl", {404, "", ""});
        b = std::make_unique<broker>(broker_options{
            .plugin_opts = {{"crl_url", server.url("/subca.crl")}, {"crl_refresh", "1h"}, {"crl_retry", "200ms"}},
            .crl_files = {pki("subca-a.crl.pem")}});
        REQUIRE(b->start());
        REQUIRE(b->wait_for_log("cause=\"HTTP 404\""));
    }
    void serve(const std::filesystem::path& crl) { server.set("/subca.crl", {200, slurp(crl.string()), "\"1\""}); }
};
}  // namespace

// ------------------------------------------------------------------ finding 1: per issuing CA

TEST_CASE("crl integrity: the ICA's CRL copied over the Sub-CA's file keeps the Sub-CA's revocations in force",
          "[integration][crl_integrity]") {
    auto dir = test_dir();
    const auto subca = dir / "subca.crl", ica = dir / "ica.crl";
    replace_file(subca, pki("subca-a.crl.pem"));
    replace_file(ica, pki("ica.crl.pem"));
    const bool expire_at_once = GENERATE(false, true);
    broker_options o{.plugin_opts = {{"crl_poll_interval", "200ms"}}, .crl_files = {subca.string(), ica.string()}};
    if (expire_at_once) o.plugin_opts.push_back({"crl_grace", "0s"});
    broker b(o);
    REQUIRE(b.start());
    REQUIRE(connect_as("dev-revoked", b) == not_authorized);

    replace_file(subca, pki("ica.crl.pem"));
    CHECK(b.wait_for_log("crl source file=" + subca.string() + " no longer delivers the tenant Sub-CA's CRL"));
    CHECK(connect_as("dev-revoked", b) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-revoked reason=revoked_crl"));
    if (!expire_at_once) {
        CHECK(connect_as("dev-001", b) == 0);  // within crl_grace the Sub-CA's CRL in force decides
    } else {
        // Stale at once: no source delivers the Sub-CA's CRL any more, so crl_stale_policy applies.
        CHECK(eventually([&] { return connect_as("dev-001", b) == not_authorized; }));
        CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=crl_stale"));
    }
}

TEST_CASE("crl integrity: a CRL URL serving the ICA's genuine CRL, or an older Sub-CA CRL, removes no revocation",
          "[integration][crl_integrity]") {
    http_server server;
    server.set("/subca.crl", {200, slurp(pki("subca-a-revokes-dev-002.crl.der")), "\"new\""});
    broker b({.plugin_opts = {{"crl_url", server.url("/subca.crl")}, {"crl_refresh", "1s"}},
              .crl_files = {pki("ica.crl.pem")}});
    REQUIRE(b.start());
    REQUIRE(connect_as("dev-002", b) == not_authorized);

    SECTION("the ICA's CRL") {
        server.set("/subca.crl", {200, slurp(pki("ica.crl.pem")), "\"ica\""});
        CHECK(b.wait_for_log("crl source url=" + server.url("/subca.crl") + " no longer delivers the tenant Sub-CA's CRL"));
    }
    SECTION("the Sub-CA's previous CRL") {
        server.set("/subca.crl", {200, slurp(pki("subca-a.crl.pem")), "\"old\""});
        CHECK(b.wait_for_log("the tenant Sub-CA CRL is a rollback: older than the one in force: CRL number 0x1000"));
    }
    CHECK(connect_as("dev-002", b) == not_authorized);
    CHECK(connect_as("dev-revoked", b) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-002 reason=revoked_crl"));
    CHECK(b.log_contains("devicegate: deny client=dev-revoked reason=revoked_crl"));
}

TEST_CASE("crl integrity: a broker restarted with an older Sub-CA CRL keeps the newer one it saw; "
          "removing the persisted CRL accepts the rollback deliberately",
          "[integration][crl_integrity]") {
    auto dir = test_dir();
    const auto state = dir / "state";
    std::filesystem::create_directories(state);
    const auto crl = dir / "subca.crl";
    http_server server;
    const bool via_url = GENERATE(false, true);
    auto options = [&] {
        broker_options o{.plugin_opts = {{"state_dir", state.string()}}, .crl_files = {crl.string()}};
        if (via_url) o = {.plugin_opts = {{"state_dir", state.string()}, {"crl_url", server.url("/subca.crl")}},
                          .crl_files = {}};
        return o;
    };
    auto deliver = [&](const std::string& file) {
        replace_file(crl, pki(file));
        server.set("/subca.crl", {200, slurp(pki(file)), ""});
    };
    deliver("subca-a-revokes-dev-002.crl.pem");
    {
        broker first(options());
        REQUIRE(first.start());
        REQUIRE(connect_as("dev-002", first) == not_authorized);
        first.stop();
    }
    CHECK(std::filesystem::exists(state / "devicegate-crl-subca.der"));

    deliver("subca-a.crl.pem");  // the Sub-CA's CRL from before dev-002 was revoked
    {
        broker second(options());
        REQUIRE(second.start());
        CHECK(second.log_contains("devicegate: crl state loaded " + (state / "devicegate-crl-subca.der").string()));
        CHECK(second.wait_for_log("the tenant Sub-CA CRL is a rollback: older than the one in force"));
        CHECK(connect_as("dev-002", second) == not_authorized);
        CHECK(second.wait_for_log("devicegate: deny client=dev-002 reason=revoked_crl"));
        CHECK(connect_as("dev-001", second) == 0);
        second.stop();
    }

    // The operator's way to go back deliberately (docs/security.md, accepting a deliberate CRL rollback): with the
    // broker stopped, remove the persisted CRL of that CA.
    std::filesystem::remove(state / "devicegate-crl-subca.der");
    broker third(options());
    REQUIRE(third.start());
    CHECK(third.wait_for_log("devicegate: crl loaded"));
    CHECK_FALSE(third.log_contains("rollback"));
    CHECK(connect_as("dev-002", third) == 0);
    CHECK(connect_as("dev-revoked", third) == not_authorized);
}

// ------------------------------------------------------------------ finding 2: future-dated CRLs

TEST_CASE("crl integrity: a future-dated CRL is refused with its cause and does not block the next correct CRL",
          "[integration][crl_integrity]") {
    auto dir = test_dir();
    const auto crl = dir / "subca.crl";
    replace_file(crl, pki("subca-a.crl.pem"));
    broker b({.plugin_opts = {{"crl_poll_interval", "200ms"}}, .crl_files = {crl.string()}});
    REQUIRE(b.start());
    REQUIRE(connect_as("dev-002", b) == 0);

    replace_file(crl, pki("subca-a-future.crl.pem"));
    CHECK(b.wait_for_log("devicegate: crl_rejected file=" + crl.string()));
    CHECK(b.wait_for_log("s in the future (clock_skew 60s)"));
    CHECK(connect_as("dev-revoked", b) == not_authorized);  // the last good CRL stays in force

    replace_file(crl, pki("subca-a-revokes-dev-002.crl.pem"));
    CHECK(eventually([&] { return connect_as("dev-002", b) == not_authorized; }));
    CHECK(b.wait_for_log("devicegate: deny client=dev-002 reason=revoked_crl"));
}

// ------------------------------------------------------------------ finding 3: CRL URL bodies

TEST_CASE("crl integrity: a CRL URL body over crl_max_bytes is refused before it is read, with backoff",
          "[integration][crl_integrity]") {
    http_server server;
    server.set("/subca.crl", {200, std::string(crl_max_bytes_default + 1, 'A'), "\"big\""});
    broker b({.plugin_opts = {{"crl_url", server.url("/subca.crl")}, {"crl_refresh", "1h"}, {"crl_retry", "300ms"}},
              .crl_files = {pki("subca-a.crl.pem")}});
    REQUIRE(b.start());
    CHECK(b.wait_for_log("cause=\"fetch failed: response larger than " +
                         std::to_string(crl_max_bytes_default) + " bytes\""));
    // Retries at 300ms, 600ms, 1.2s, 2.4s...: at most 5 fetches in 4 s (every 300ms: 13).
    std::this_thread::sleep_for(4s);
    CHECK(server.count("/subca.crl") <= 5);
    CHECK(server.count("/subca.crl") >= 3);
    CHECK(status_kib(b.pid(), "VmHWM") < 48 * 1024);  // the body was never held
    CHECK(connect_as("dev-revoked", b) == not_authorized);
    CHECK(connect_as("dev-001", b) == 0);
}

TEST_CASE("crl integrity: an unsigned 1,000,000-entry CRL body is refused before it is decoded, "
          "and its memory is given back",
          "[integration][crl_integrity]") {
    auto dir = test_dir();
    // Sub-CA A's name, another key: to the broker an unsigned body until the signature is checked.
    devicegate::bench::write_big_crl(pki("forged-subca-a.crt"), pki("forged-subca-a.key"), 1'000'000, {},
                                     (dir / "forged.crl").string());
    url_broker u;
    broker& b = *u.b;
    const long before = status_kib(b.pid(), "VmHWM");
    const long body_kib = static_cast<long>(std::filesystem::file_size(dir / "forged.crl") / 1024);
    u.serve(dir / "forged.crl");
    CHECK(b.wait_for_log("CRL signature does not verify against the tenant Sub-CA", 20s));
    const long peak = status_kib(b.pid(), "VmHWM");
    const long after = status_kib(b.pid(), "VmRSS");
    WARN("unsigned " << body_kib / 1024 << " MiB CRL body: broker VmHWM " << before / 1024 << " -> " << peak / 1024
                     << " MiB, VmRSS after the refusal " << after / 1024 << " MiB");
    CHECK(peak - before < body_kib + 24 * 1024);  // the body and little else: no decoded entries
    CHECK(after < before + 16 * 1024);            // given back after the refusal
}

TEST_CASE("crl integrity: a valid 1,000,000-entry CRL at a URL is taken (peak memory reported)",
          "[integration][crl_integrity]") {
    auto dir = test_dir();
    auto victim = devicegate::test::load_cert(pki("devices/dev-003.crt"));
    devicegate::bench::write_big_crl(pki("subca-a.crt"), pki("subca-a.key"), 1'000'000,
                                     {X509_get0_serialNumber(victim.get())}, (dir / "big.crl").string());
    url_broker u;
    broker& b = *u.b;
    auto dev = device("dev-003");
    REQUIRE(dev->connect(b.port()) == 0);
    const long before = status_kib(b.pid(), "VmHWM");
    u.serve(dir / "big.crl");
    CHECK(dev->wait_disconnected(30s));
    CHECK(b.wait_for_log("devicegate: kick client=dev-003 reason=revoked_crl"));
    WARN("valid 1,000,000-entry CRL (" << std::filesystem::file_size(dir / "big.crl") / (1024 * 1024)
                                       << " MiB DER): broker VmHWM " << before / 1024 << " -> "
                                       << status_kib(b.pid(), "VmHWM") / 1024 << " MiB, VmRSS after "
                                       << status_kib(b.pid(), "VmRSS") / 1024 << " MiB");
}

// ------------------------------------------------------------------ CRL scope (RFC 5280 5.2, 5.3)

namespace {
using devicegate::test::crl_ext;
using devicegate::test::crl_spec;

// A genuine Sub-CA A CRL, newer than every CRL of the test PKI, listing no device, whose scope
// leaves the devices out (or which the plugin cannot process).
crl_spec narrowed(const std::string& kind) {
    crl_spec spec{.number = 0x7000};
    if (kind == "onlyContainsCACerts") spec.extensions = {{"issuingDistributionPoint", "critical,onlyCA:TRUE"}};
    if (kind == "onlySomeReasons") {
        spec.extensions = {{"issuingDistributionPoint", "critical,onlysomereasons:keyCompromise"}};
    }
    if (kind == "a critical extension") spec.extensions = {{"1.3.6.1.4.1.99999.1", "critical,ASN1:NULL"}};
    if (kind == "certificateIssuer") {
        spec.revoked = {"dev-001"};
        spec.entry_extensions = {devicegate::test::certificate_issuer(true)};
    }
    return spec;
}
}  // namespace

TEST_CASE("crl scope: a genuine newer Sub-CA CRL limited by its issuingDistributionPoint, or with an unprocessed "
          "critical extension, is refused by name; the CRL in force and the stored CRL number stay",
          "[integration][crl_integrity][crl_scope]") {
    auto dir = test_dir();
    const auto crl = dir / "subca.crl", state = dir / "state";
    std::filesystem::create_directories(state);
    replace_file(crl, pki("subca-a-revokes-dev-002.crl.pem"));
    const broker_options o{.plugin_opts = {{"crl_poll_interval", "200ms"}, {"state_dir", state.string()}},
                           .crl_files = {crl.string()}};
    const std::string kind = GENERATE("onlyContainsCACerts", "onlySomeReasons", "a critical extension",
                                      "certificateIssuer");
    INFO(kind);
    {
        broker b(o);
        REQUIRE(b.start());
        REQUIRE(connect_as("dev-002", b) == not_authorized);

        devicegate::test::write_crl(narrowed(kind), crl.string());
        CHECK(b.wait_for_log("devicegate: crl_rejected file=" + crl.string() + " cause=\"" + crl.string() +
                             ": the tenant Sub-CA's CRL "));
        CHECK(b.log_contains(kind == "certificateIssuer" ? "is indirect: an entry carries a certificateIssuer"
                                                         : kind));
        CHECK(b.log_contains("keeping the last good CRL"));
        CHECK(connect_as("dev-002", b) == not_authorized);
        CHECK(connect_as("dev-revoked", b) == not_authorized);
        CHECK(b.wait_for_log("devicegate: deny client=dev-002 reason=revoked_crl"));
        CHECK(connect_as("dev-001", b) == 0);
        b.stop();
    }
    // The refused CRL's number (0x7000) was not stored: after a restart a complete CRL numbered
    // below it is taken, no rollback.
    devicegate::test::write_crl({.number = 0x5000, .revoked = {"dev-003"}}, crl.string());
    broker again(o);
    REQUIRE(again.start());
    CHECK(again.wait_for_log("devicegate: crl loaded file=" + crl.string()));
    CHECK_FALSE(again.log_contains("rollback"));
    CHECK(connect_as("dev-003", again) == not_authorized);
    CHECK(connect_as("dev-002", again) == 0);
}

TEST_CASE("crl scope: a CA-only CRL configured next to the full one stops the start, naming it",
          "[integration][crl_integrity][crl_scope]") {
    auto dir = test_dir();
    const auto only_ca = dir / "subca-onlyca.crl";
    devicegate::test::write_crl(narrowed("onlyContainsCACerts"), only_ca.string());
    broker b({.crl_files = {pki("subca-a-revokes-dev-002.crl.pem"), only_ca.string()}});
    CHECK_FALSE(b.start());
    CHECK(b.wait_exit(5s).value_or(0) != 0);
    CHECK(b.log_contains("devicegate: refusing to start: "));
    CHECK(b.log_contains(only_ca.string() + ": the tenant Sub-CA's CRL is not complete for the device certificates "
                                            "checked against it: its issuingDistributionPoint has "
                                            "onlyContainsCACerts"));
}

TEST_CASE("crl scope: step-ca's CRL (issuingDistributionPoint naming its /1.0/crl) is taken; a CRL for another "
          "distribution point replaces it not",
          "[integration][crl_integrity][crl_scope]") {
    auto dir = test_dir();
    http_server server;
    auto serve = [&](const std::string& url, long number, std::vector<std::string> revoked) {
        const auto file = dir / "served.crl";
        devicegate::test::write_crl({.number = number, .revoked = std::move(revoked),
                                     .extensions = {devicegate::test::stepca_idp(url)}},
                                    file.string());
        server.set("/1.0/crl", {200, slurp(file.string()), "\"" + std::to_string(number) + "\""});
    };
    serve("https://ca.example:9000/1.0/crl", 0x7000, {"dev-002", "dev-revoked"});
    broker b({.plugin_opts = {{"crl_url", server.url("/1.0/crl")}, {"crl_refresh", "1s"}},
              .crl_files = {pki("ica.crl.pem")}});
    REQUIRE(b.start());
    CHECK(b.wait_for_log("devicegate: crl loaded url=" + server.url("/1.0/crl") + " tenant Sub-CA CRL with 2 entries"));
    CHECK(connect_as("dev-002", b) == not_authorized);
    CHECK(connect_as("dev-001", b) == 0);

    // A partition of the same CA's revocations (another distribution point), newer, listing no device.
    serve("https://ca.example:9000/part-2.crl", 0x7001, {});
    CHECK(b.wait_for_log("devicegate: crl_rejected url=" + server.url("/1.0/crl") + " cause=\"" +
                         server.url("/1.0/crl") + ": the tenant Sub-CA CRL is refused: its issuingDistributionPoint "
                         "names URI:https://ca.example:9000/part-2.crl, the CRL in force from " +
                         server.url("/1.0/crl") + " names URI:https://ca.example:9000/1.0/crl", 10s));
    CHECK(connect_as("dev-002", b) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-002 reason=revoked_crl"));
    CHECK(connect_as("dev-revoked", b) == not_authorized);

    // step-ca's next CRL (same distribution point) is taken as usual.
    serve("https://ca.example:9000/1.0/crl", 0x7002, {"dev-002"});
    CHECK(b.wait_for_log("tenant Sub-CA CRL with 1 entries", 10s));
    CHECK(eventually([&] { return connect_as("dev-revoked", b) == 0; }));
}
