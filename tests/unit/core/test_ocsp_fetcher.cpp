#include "devicegate/ocsp_fetcher.hpp"

#include "eventually.hpp"
#include "http_server.hpp"
#include "ocsp_craft.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <thread>

using namespace std::chrono_literals;
using namespace devicegate;
using namespace devicegate::test;

namespace {

std::shared_ptr<const tenant_trust> tenant_a() {
    return tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
}

struct fixture {
    std::shared_ptr<const tenant_trust> trust = tenant_a();
    http_server responder;
    ocsp_cache cache{100, 3600s};
    broker_queue queue;
    std::vector<std::string> lines;
    std::mutex lines_mutex;
    std::unique_ptr<ocsp_fetcher> fetcher;

    explicit fixture(ocsp_fetcher::options o = {}) {
        o.nonce = false;  // so that a response crafted ahead matches the fetcher's request
        if (o.responder_override.empty()) o.responder_override = responder.url("/ocsp");
        fetcher = std::make_unique<ocsp_fetcher>(o, trust, cache, queue, logger([this](log_level, std::string_view l) {
                                                     std::lock_guard lock(lines_mutex);
                                                     lines.emplace_back(l);
                                                 }));
    }
    // The responder answers every request for `device` with this status.
    void answer(const std::string& device, response_spec spec) {
        auto leaf = load_cert(device_cert(device));
        auto q = make_ocsp_query(leaf.get(), trust->certificate(ca_role::sub_ca), false);
        responder.set("/ocsp", {200, craft(q, spec), "", "application/ocsp-response"});
    }
    // One fetch as the fetcher's thread does it.
    void fetch(X509* leaf) {
        const auto fp = certificate_sha256(leaf);
        REQUIRE(cache.begin_fetch(fp, leaf, serial_hex(X509_get0_serialNumber(leaf)), std::time(nullptr)));
        fetcher->fetch(fp, leaf);
        cache.end_fetch(fp);
    }
    std::size_t logged(const std::string& text) {
        std::lock_guard lock(lines_mutex);
        return std::count_if(lines.begin(), lines.end(), [&](const auto& l) { return l.find(text) != std::string::npos; });
    }
};


}  // namespace

TEST_CASE("ocsp_fetcher: a good answer is verified and cached; nothing is kicked") {
    fixture f;
    f.answer("dev-001", {});
    auto leaf = load_cert(device_cert("dev-001"));
    f.fetch(leaf.get());
    CHECK(f.cache.lookup(certificate_sha256(leaf.get()), std::time(nullptr)) == ocsp_status::good);
    CHECK(f.fetcher->failures() == 0);
    REQUIRE(f.responder.requests().size() == 1);
    CHECK(f.responder.requests()[0].method == "POST");
    CHECK(f.queue.drain().kicks.empty());
    CHECK(f.logged("status=good") == 1);
}

TEST_CASE("ocsp_fetcher: a revoked answer is cached and asks the broker thread to kick the certificate") {
    fixture f;
    f.answer("dev-002", {.status = V_OCSP_CERTSTATUS_REVOKED});
    auto leaf = load_cert(device_cert("dev-002"));
    f.fetch(leaf.get());
    CHECK(f.cache.lookup(certificate_sha256(leaf.get()), std::time(nullptr)) == ocsp_status::revoked);
    auto kicks = f.queue.drain().kicks;
    REQUIRE(kicks.size() == 1);
    CHECK(kicks[0].why == reason::revoked_ocsp);
    CHECK_FALSE(kicks[0].everyone);
    CHECK(kicks[0].serials == std::vector<serial_key>{make_serial_key(X509_get0_serialNumber(leaf.get()))});
    CHECK(f.logged("is revoked") == 1);
}

TEST_CASE("ocsp_fetcher: failures are counted, retried later, and logged once per cause") {
    fixture f;
    f.responder.set("/ocsp", {500, "oops", "", "text/plain"});
    auto leaf = load_cert(device_cert("dev-001"));
    const auto fp = certificate_sha256(leaf.get());
    f.fetch(leaf.get());
    CHECK(f.fetcher->failures() == 1);
    CHECK_FALSE(f.cache.lookup(fp, std::time(nullptr)));
    // Failed recently: no new fetch starts before the retry time.
    CHECK_FALSE(f.cache.begin_fetch(fp, leaf.get(), "", std::time(nullptr)));
    f.fetcher->fetch(fp, leaf.get());  // the same cause again
    CHECK(f.fetcher->failures() == 2);
    CHECK(f.logged("ocsp_failed") == 1);
    CHECK(f.logged("cause=\"HTTP 500\"") == 1);
    // A forged answer (signed by another tenant's CA) is a failure too, with its own cause.
    f.answer("dev-001", {.signer = "subca-b"});
    f.fetcher->fetch(fp, leaf.get());
    CHECK(f.fetcher->failures() == 3);
    CHECK(f.logged("ocsp_failed") == 2);
    CHECK_FALSE(f.cache.lookup(fp, std::time(nullptr)));
    f.answer("dev-001", {});
    f.fetcher->fetch(fp, leaf.get());
    CHECK(f.logged("answers again") == 1);
}

TEST_CASE("ocsp_fetcher: no responder anywhere is a failure naming the cause") {
    fixture f;
    ocsp_fetcher::options o;
    o.nonce = false;
    ocsp_fetcher no_url(o, f.trust, f.cache, f.queue, logger([&](log_level, std::string_view l) { f.lines.emplace_back(l); }));
    auto leaf = load_cert(device_cert("dev-001"));  // the test PKI's devices carry no AIA
    no_url.fetch(certificate_sha256(leaf.get()), leaf.get());
    CHECK(no_url.failures() == 1);
    CHECK(f.logged("names no OCSP responder") == 1);
    CHECK(f.responder.requests().empty());
}

TEST_CASE("ocsp_fetcher: requests from the broker thread are fetched on the background thread, once") {
    fixture f;
    f.answer("dev-001", {});
    auto leaf = load_cert(device_cert("dev-001"));
    const auto fp = certificate_sha256(leaf.get());
    f.fetcher->start();
    f.fetcher->request(fp, leaf.get(), "01");
    f.fetcher->request(fp, leaf.get(), "01");  // deduplicated while in flight
    REQUIRE(eventually([&] { return f.cache.lookup(fp, std::time(nullptr)).has_value(); }));
    f.fetcher->stop();
    CHECK(f.cache.lookup(fp, std::time(nullptr)) == ocsp_status::good);
    CHECK(f.responder.count("/ocsp") == 1);
}

TEST_CASE("ocsp_fetcher: a connected device's answer is refreshed ahead of its expiry") {
    ocsp_fetcher::options o;
    o.refresh_ahead = 5min;
    fixture f(o);
    auto leaf = load_cert(device_cert("dev-001"));
    const auto fp = certificate_sha256(leaf.get());
    const std::time_t now = std::time(nullptr);
    // An answer that expires within refresh_ahead, held by a connected session.
    f.answer("dev-001", {.next_update = now + 60});
    f.fetch(leaf.get());
    f.cache.set_active(fp, true, leaf.get());
    REQUIRE(f.responder.count("/ocsp") == 1);
    f.answer("dev-001", {.status = V_OCSP_CERTSTATUS_REVOKED});
    f.fetcher->start();
    CHECK(eventually([&] { return f.cache.lookup(fp, std::time(nullptr)) == ocsp_status::revoked; }));
    f.fetcher->stop();
    CHECK(f.responder.count("/ocsp") >= 2);
    CHECK(f.queue.drain().kicks.size() == 1);
}
