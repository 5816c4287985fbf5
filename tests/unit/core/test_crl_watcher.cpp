#include "devicegate/crl_watcher.hpp"
#include "http_server.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>

using namespace devicegate;
using namespace devicegate::test;
using namespace std::chrono_literals;

namespace {

struct captured_log {
    std::mutex mutex;
    std::vector<std::string> lines;
    logger make() {
        return logger([this](log_level, std::string_view line) {
            std::lock_guard lock(mutex);
            lines.emplace_back(line);
        });
    }
    bool contains(const std::string& needle) {
        std::lock_guard lock(mutex);
        for (const auto& l : lines) {
            if (l.find(needle) != std::string::npos) return true;
        }
        return false;
    }
    std::size_t count(const std::string& needle) {
        std::lock_guard lock(mutex);
        return static_cast<std::size_t>(std::count_if(
            lines.begin(), lines.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; }));
    }
};

serial_key serial_of(const std::string& device) {
    auto cert = load_cert(device_cert(device));
    return make_serial_key(X509_get0_serialNumber(cert.get()));
}

// Replaces a file the way operators should (write then rename), so the stamp changes.
void replace(const std::string& target, const std::string& data) {
    write_file(target + ".tmp", data);
    std::filesystem::rename(target + ".tmp", target);
}

std::string content(const std::string& name) { return read_file(pki(name), max_crl_file_bytes); }

}  // namespace

TEST_CASE("crl watcher: reloads, keeps the last good CRL, and asks for kicks") {
    temp_dir dir;
    const std::string crl = dir.file("subca.crl");
    write_file(crl, content("subca-a.crl.pem"));
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    broker_queue queue;
    captured_log log;
    crl_watcher watcher(trust, {crl}, 100ms, slot, queue, log.make());
    watcher.load_initial();
    REQUIRE(slot.load());
    CHECK(slot.load()->revoked_leaves() == std::vector<serial_key>{serial_of("dev-revoked")});
    auto generation = slot.load()->generation();

    SECTION("an unchanged file is not reloaded") {
        watcher.poll_once();
        CHECK(slot.load()->generation() == generation);
    }
    SECTION("a new CRL is swapped in and its new serials are queued for a kick") {
        replace(crl, content("subca-a-revokes-dev-002.crl.der"));
        watcher.poll_once();
        CHECK(slot.load()->generation() == generation + 1);
        auto batch = queue.drain();
        REQUIRE(batch.kicks.size() == 1);
        CHECK(batch.kicks[0].serials == std::vector<serial_key>{serial_of("dev-002")});
        CHECK(batch.kicks[0].why == reason::revoked_crl);
    }
    SECTION("garbage, a truncated file, a foreign CRL, an older CRL and a deleted file leave the old one in force") {
        const std::pair<std::string, std::string> bad[] = {
            {"garbage", "this is not a CRL"},
            {"malformed PEM CRL", content("subca-a.crl.pem").substr(0, 200)},
            {"none of the configured", content("subca-b.crl.pem")},
            {"signature does not verify", content("subca-a-forged.crl.pem")},
        };
        for (const auto& [cause, data] : bad) {
            INFO(cause);
            replace(crl, data);
            watcher.poll_once();
            CHECK(slot.load()->generation() == generation);
            CHECK(log.contains("crl_rejected file=" + crl));
        }
        CHECK(log.contains("neither PEM nor valid DER CRL"));
        // A genuine but older CRL: refused; the CRL in force stays, stale from now on because
        // its only source no longer delivers it (a new snapshot says so).
        replace(crl, content("subca-a-stale.crl.pem"));
        watcher.poll_once();
        CHECK(log.contains("older than the one in force"));
        CHECK(watcher.rejected() == 5);
        REQUIRE(slot.load()->generation() == generation + 1);
        const std::time_t now = std::time(nullptr);
        CHECK(slot.load()->check(serial_of("dev-001"), now, 1h, stale_policy::deny).why == reason::ok);
        CHECK(slot.load()->check(serial_of("dev-001"), now + 3602, 1h, stale_policy::deny).why == reason::crl_stale);
        std::filesystem::remove(crl);
        watcher.poll_once();
        CHECK(log.contains("cannot stat"));
        CHECK(slot.load()->revoked_leaves() == std::vector<serial_key>{serial_of("dev-revoked")});
        CHECK(queue.drain().kicks.empty());
    }
    SECTION("the same good file put back after a garbage one is said to be accepted again, once") {
        replace(crl, "this is not a CRL");
        watcher.poll_once();
        CHECK(log.contains("crl_rejected file=" + crl));
        CHECK_FALSE(log.contains("accepted again"));
        replace(crl, content("subca-a.crl.pem"));  // identical to the CRL in force: no "crl loaded"
        watcher.poll_once();
        CHECK(slot.load()->generation() == generation);
        CHECK(log.contains("devicegate: crl source file=" + crl + " accepted again (after crl_rejected)"));
        replace(crl, content("subca-a-revokes-dev-002.crl.der"));
        watcher.poll_once();
        CHECK(log.count("accepted again") == 1);
        std::filesystem::remove(crl);  // removed, then put back as it was
        watcher.poll_once();
        replace(crl, content("subca-a-revokes-dev-002.crl.der"));
        watcher.poll_once();
        CHECK(log.count("accepted again") == 2);
    }
    SECTION("the thread picks up a change within the poll interval, and a reload request at once") {
        watcher.start();
        replace(crl, content("subca-a-revokes-dev-002.crl.pem"));
        auto deadline = std::chrono::steady_clock::now() + 5s;
        while (slot.load()->generation() == generation && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(10ms);
        }
        CHECK(slot.load()->generation() == generation + 1);
        watcher.request_reload();  // re-reads even an unchanged file
        deadline = std::chrono::steady_clock::now() + 5s;
        while (slot.load()->generation() == generation + 1 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(10ms);
        }
        CHECK(slot.load()->generation() == generation + 2);
        watcher.stop();
    }
}

TEST_CASE("crl watcher: a Sub-CA revoked by the ICA kicks everyone") {
    temp_dir dir;
    const std::string ica_crl = dir.file("ica.crl");
    write_file(ica_crl, content("ica.crl.pem"));
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    broker_queue queue;
    captured_log log;
    crl_watcher watcher(trust, {pki("subca-a.crl.pem"), ica_crl}, 100ms, slot, queue, log.make());
    watcher.load_initial();
    CHECK_FALSE(slot.load()->chain_revoked());
    replace(ica_crl, content("ica-revokes-subca-a.crl.pem"));
    watcher.poll_once();
    CHECK(slot.load()->chain_revoked());
    auto batch = queue.drain();
    REQUIRE(batch.kicks.size() == 1);
    CHECK(batch.kicks[0].everyone);
    CHECK(log.contains("tenant chain revoked"));
}

TEST_CASE("crl watcher: start-up fails on a bad CRL file") {
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    broker_queue queue;
    crl_watcher missing(trust, {"/nonexistent/x.crl"}, 1s, slot, queue, logger{});
    CHECK_THROWS_WITH(missing.load_initial(), Catch::Contains("/nonexistent/x.crl: cannot stat"));
    crl_watcher foreign(trust, {pki("subca-b.crl.pem")}, 1s, slot, queue, logger{});
    CHECK_THROWS_WITH(foreign.load_initial(), Catch::Contains("none of the configured"));
}

TEST_CASE("crl watcher: CRLs from URLs, with conditional requests") {
    devicegate::test::http_server server;
    server.set("/crl", {200, content("subca-a.crl.pem"), "\"v1\""});
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    broker_queue queue;
    captured_log log;
    crl_url_options always;  // refetch on every poll
    always.refresh = 0ms;
    always.retry = 0ms;
    crl_watcher watcher(trust, {}, 100ms, slot, queue, log.make(), {server.url("/crl")}, always);
    watcher.load_initial();
    REQUIRE(slot.load()->revoked_leaves() == std::vector<serial_key>{serial_of("dev-revoked")});
    CHECK(log.contains("crl loaded url=" + server.url("/crl")));
    const auto generation = slot.load()->generation();

    SECTION("an unchanged CRL is answered 304 and not parsed again") {
        watcher.poll_once();
        CHECK(slot.load()->generation() == generation);
        auto requests = server.requests();
        REQUIRE(requests.size() == 2);
        CHECK(requests[1].if_none_match == "\"v1\"");
    }
    SECTION("a new CRL is swapped in and its new serials are kicked") {
        server.set("/crl", {200, content("subca-a-revokes-dev-002.crl.der"), "\"v2\""});
        watcher.poll_once();
        CHECK(slot.load()->generation() == generation + 1);
        auto batch = queue.drain();
        REQUIRE(batch.kicks.size() == 1);
        CHECK(batch.kicks[0].serials == std::vector<serial_key>{serial_of("dev-002")});
    }
    SECTION("404, garbage and another CA's CRL leave the last good CRL in force") {
        const std::pair<devicegate::test::http_server::route, std::string> bad[] = {
            {{404, "no CRL available", ""}, "HTTP 404"},
            {{200, "garbage", "\"g\""}, "neither PEM nor valid DER CRL"},
            {{200, content("subca-b.crl.pem"), "\"b\""}, "none of the configured"},
            {{500, "oops", ""}, "HTTP 500"},
        };
        for (const auto& [route, cause] : bad) {
            INFO(cause);
            server.set("/crl", route);
            watcher.poll_once();
            CHECK(slot.load()->generation() == generation);
            server.set("/crl", {200, content("subca-a.crl.pem"), "\"v1\""});
            watcher.poll_once();  // back to the good one (304: nothing changes)
        }
        CHECK(log.contains("crl_rejected url=" + server.url("/crl") + " cause=\"HTTP 404\"; keeping the last good CRL"));
        CHECK(log.contains("neither PEM nor valid DER CRL"));
        CHECK(log.contains("none of the configured"));
        CHECK(log.contains("crl source url=" + server.url("/crl") + " accepted again (after crl_rejected)"));
        CHECK(slot.load()->revoked_leaves() == std::vector<serial_key>{serial_of("dev-revoked")});
    }
}

TEST_CASE("crl watcher: a URL without a CRL at start is missing, then stale after the grace") {
    devicegate::test::http_server server;  // serves 404 for everything at first
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    broker_queue queue;
    captured_log log;
    crl_url_options always;
    always.refresh = 0ms;
    always.retry = 0ms;
    crl_watcher watcher(trust, {}, 100ms, slot, queue, log.make(), {server.url("/crl")}, always);
    REQUIRE_NOTHROW(watcher.load_initial());  // a CA outage must not stop the broker
    CHECK(log.contains("no CRL from it yet"));
    const std::time_t now = std::time(nullptr);
    const auto dev = serial_of("dev-001");
    CHECK(slot.load()->check(dev, now, 1h, stale_policy::deny).why == reason::ok);  // within the grace
    auto stale = slot.load()->check(dev, now + 3601, 1h, stale_policy::deny);
    CHECK(stale.why == reason::crl_stale);
    REQUIRE(stale.missing != nullptr);
    CHECK(stale.missing->source == server.url("/crl"));
    server.set("/crl", {200, content("subca-a.crl.pem"), ""});
    watcher.poll_once();
    CHECK(slot.load()->check(dev, now + 3601, 1h, stale_policy::deny).why == reason::ok);
}

TEST_CASE("crl watcher: URLs learned from CRL Distribution Points are fetched") {
    devicegate::test::http_server server;
    server.set("/learned.crl", {200, content("subca-a-revokes-dev-002.crl.pem"), ""});
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    broker_queue queue;
    captured_log log;
    crl_watcher watcher(trust, {pki("subca-a.crl.pem")}, 50ms, slot, queue, log.make());
    watcher.load_initial();
    watcher.start();
    watcher.add_url(server.url("/learned.crl"));
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (slot.load()->revoked_leaves().size() < 2 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    watcher.stop();
    CHECK(slot.load()->revoked_leaves().size() == 2);
    CHECK(log.contains("crl url learned from a device certificate's CRL Distribution Points"));
}
