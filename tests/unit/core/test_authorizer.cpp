#include "devicegate/authorizer.hpp"
#include "cert_factory.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;
using namespace devicegate::test;
using namespace std::chrono_literals;

namespace {

struct fixture {
    std::shared_ptr<const plugin_config> config;
    std::shared_ptr<const tenant_trust> trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> slot;
    std::unique_ptr<authorizer> auth;

    explicit fixture(plugin_config c = {}) : config(std::make_shared<const plugin_config>(std::move(c))) {
        publish({"subca-a.crl.pem"});
        auth = std::make_unique<authorizer>(config, trust, slot);
    }
    void publish(std::vector<std::string> files) {
        std::vector<verified_crl> crls;
        for (const auto& f : files) {
            auto loaded = load_crl_file(pki(f), *trust);
            crls.insert(crls.end(), loaded.begin(), loaded.end());
        }
        slot.store(std::make_shared<const crl_set>(std::move(crls), *trust, 1));
    }
    decision check(const std::string& device, const std::string& client_id, std::time_t now = std::time(nullptr)) {
        auto cert = load_cert(device_cert(device));
        return auth->authorize(cert.get(), client_id, now);
    }
};

// An authorizer with a deny-list (denylist_grace 60s) and one CRL file.
struct denylist_fixture {
    std::shared_ptr<const tenant_trust> trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    snapshot_slot<crl_set> crls;
    denylist_state state;
    std::unique_ptr<authorizer> auth;

    denylist_fixture(std::set<std::string> services, const std::string& crl) {
        plugin_config c;
        c.denylist_grace = std::chrono::seconds(60);
        c.service_names = std::move(services);
        crls.store(std::make_shared<const crl_set>(load_crl_file(pki(crl), *trust), *trust, 1));
        state.list.store(std::make_shared<const denylist>());
        auth = std::make_unique<authorizer>(std::make_shared<const plugin_config>(std::move(c)), trust, crls, &state);
    }
};

}  // namespace

TEST_CASE("authorizer: a device of this tenant is admitted, then served from the cache") {
    fixture f;
    auto first = f.check("dev-001", "dev-001");
    CHECK(first.why == reason::ok);
    CHECK(first.device_id == "dev-001");
    CHECK_FALSE(first.cache_hit);
    CHECK(first.serial_hex.size() >= 32);
    auto second = f.check("dev-001", "dev-001");
    CHECK(second.why == reason::ok);
    CHECK(second.cache_hit);
    CHECK(f.check("dev-nosan", "dev-nosan").why == reason::ok);  // a DNS SAN is optional
}

TEST_CASE("authorizer: every refusal has its reason code") {
    fixture f;
    struct row {
        const char* device;
        const char* client_id;
        reason expected;
    };
    const row rows[] = {
        {"tenant-b-dev", "tenant-b-dev", reason::wrong_issuer},
        {"foreign-dev", "foreign-dev", reason::wrong_issuer},
        {"dev-self", "dev-self", reason::self_signed},
        {"dev-expired", "dev-expired", reason::expired},
        {"dev-future", "dev-future", reason::not_yet_valid},
        {"dev-eku", "dev-eku", reason::wrong_eku},
        {"dev-ca", "dev-ca", reason::not_end_entity},
        {"dev-forged", "dev-forged", reason::chain_invalid},
        {"dev-bad-cn", "dev+bad#1", reason::bad_device_id},
        {"dev-san-mismatch", "dev-san-mismatch", reason::bad_device_id},
        {"dev-001", "dev-002", reason::client_id_mismatch},
        {"dev-001", "", reason::client_id_mismatch},
        {"dev-revoked", "dev-revoked", reason::revoked_crl},
    };
    for (const auto& r : rows) {
        INFO(r.device << " as " << r.client_id);
        auto d = f.check(r.device, r.client_id);
        CHECK(d.why == r.expected);
        CHECK_FALSE(d.detail.empty());
        CHECK(d.serial_hex != "-");
    }
    CHECK(f.auth->authorize(nullptr, "dev-001", std::time(nullptr)).why == reason::no_certificate);
}

TEST_CASE("authorizer: validity uses the configured clock skew, also on cache hits") {
    plugin_config c;
    c.clock_skew = 120s;
    fixture f(c);
    auto dev = load_cert(device_cert("dev-001"));
    const std::time_t not_before = to_time_t(X509_get0_notBefore(dev.get()));
    CHECK(f.check("dev-001", "dev-001", not_before - 119).why == reason::ok);
    CHECK(f.check("dev-001", "dev-001", not_before - 121).why == reason::not_yet_valid);
    // Expiry on a 7-day certificate: the test PKI's devices may outlive their CA by the
    // seconds the PKI script took, and then the CA's expiry would decide first.
    temp_dir dir;
    cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    auto cert = factory.issue(dir.path(), "dev-skew");
    auto at = [&](std::time_t now) { return f.auth->authorize(cert.get(), "dev-skew", now); };
    const std::time_t not_after = to_time_t(X509_get0_notAfter(cert.get()));
    CHECK(at(not_after + 119).why == reason::ok);
    auto late = at(not_after + 121);
    CHECK(late.why == reason::expired);
    CHECK(late.cache_hit);
}

TEST_CASE("authorizer: a new revocation snapshot applies to cached certificates") {
    fixture f;
    REQUIRE(f.check("dev-002", "dev-002").why == reason::ok);
    f.publish({"subca-a-revokes-dev-002.crl.der"});
    auto d = f.check("dev-002", "dev-002");
    CHECK(d.cache_hit);
    CHECK(d.why == reason::revoked_crl);

    f.publish({"subca-a.crl.pem", "ica-revokes-subca-a.crl.pem"});
    CHECK(f.check("dev-001", "dev-001").why == reason::ca_revoked);

    f.publish({"subca-a-stale.crl.pem"});
    CHECK(f.check("dev-001", "dev-001").why == reason::crl_stale);
}

TEST_CASE("authorizer: the verify cache is bounded") {
    plugin_config c;
    c.verify_cache_size = 2;
    fixture f(c);
    for (const char* d : {"dev-001", "dev-002", "dev-003", "dev-004", "dev-005"}) {
        REQUIRE(f.check(d, d).why == reason::ok);
        CHECK(f.auth->cache_size() <= 2);
    }
}

TEST_CASE("tenant trust: refuses a misconfigured chain") {
    CHECK_THROWS_WITH(tenant_trust::load(pki("subca-b.crt"), pki("ica.crt"), pki("other-root.crt")),
                      Catch::Contains("was not issued by the Root"));
    CHECK_THROWS_WITH(tenant_trust::load(pki("subca-a.crt"), pki("root.crt"), pki("root.crt")),
                      Catch::Contains("was not issued by the ICA"));
    CHECK_THROWS_WITH(tenant_trust::load(pki("tenant-a-chain.crt"), pki("ica.crt"), pki("root.crt")),
                      Catch::Contains("expected exactly one tenant Sub-CA certificate, found 3"));
    CHECK_THROWS_WITH(tenant_trust::load(device_cert("dev-001"), pki("ica.crt"), pki("root.crt")),
                      Catch::Contains("is not a CA certificate"));
    CHECK_THROWS_WITH(tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("nope.crt")),
                      Catch::Contains("nope.crt: cannot stat"));
}

TEST_CASE("authorizer: the Redis deny-list and its staleness policy") {
    denylist_fixture fx({}, "subca-a.crl.pem");
    denylist_state& state = fx.state;
    authorizer& auth = *fx.auth;
    auto dev1 = load_cert(device_cert("dev-001"));
    auto dev3 = load_cert(device_cert("dev-003"));
    const std::time_t now = std::time(nullptr);
    REQUIRE(auth.authorize(dev1.get(), "dev-001", now).why == reason::ok);

    auto list = std::make_shared<denylist>();
    list->devices.insert("dev-001");
    list->serials.insert(serial_hex(X509_get0_serialNumber(dev3.get())));
    state.list.store(list);
    auto by_id = auth.authorize(dev1.get(), "dev-001", now);
    CHECK(by_id.why == reason::revoked_denylist);
    CHECK_THAT(by_id.detail, Catch::Contains("device id"));
    auto by_serial = auth.authorize(dev3.get(), "dev-003", now);
    CHECK(by_serial.why == reason::revoked_denylist);
    CHECK_THAT(by_serial.detail, Catch::Contains("serial"));

    state.list.store(std::make_shared<const denylist>());
    state.stale_since = now - 59;
    CHECK(auth.authorize(dev1.get(), "dev-001", now).why == reason::ok);  // within the grace
    state.stale_since = now - 61;
    CHECK(auth.authorize(dev1.get(), "dev-001", now).why == reason::denylist_stale);
}

TEST_CASE("authorizer: a service identity ignores deny-list staleness but not deny-list entries or the CRL") {
    // dev-001 and dev-002 stand in for Sub-CA certificates named as services.
    denylist_fixture fx({"dev-001", "dev-002"}, "subca-a-revokes-dev-002.crl.pem");
    denylist_state& state = fx.state;
    authorizer& auth = *fx.auth;
    auto svc = load_cert(device_cert("dev-001"));
    auto revoked_svc = load_cert(device_cert("dev-002"));
    auto dev = load_cert(device_cert("dev-003"));
    const std::time_t now = std::time(nullptr);
    auto admitted = auth.authorize(svc.get(), "dev-001", now);
    CHECK(admitted.why == reason::ok);
    CHECK(admitted.kind == identity_kind::service);
    CHECK(auth.authorize(dev.get(), "dev-003", now).kind == identity_kind::device);

    state.stale_since = now - 61;
    CHECK(auth.authorize(dev.get(), "dev-003", now).why == reason::denylist_stale);
    CHECK(auth.authorize(svc.get(), "dev-001", now).why == reason::ok);
    CHECK(auth.authorize(revoked_svc.get(), "dev-002", now).why == reason::revoked_crl);
    auto list = std::make_shared<denylist>();
    list->devices.insert("dev-001");
    state.list.store(list);
    CHECK(auth.authorize(svc.get(), "dev-001", now).why == reason::revoked_denylist);
    // The offline re-check (wills, queued messages) sees the same revocations.
    CHECK(auth.revocation(admitted.serial, "dev-001", admitted.serial_hex, admitted.fingerprint, now) ==
          reason::revoked_denylist);
    state.list.store(std::make_shared<const denylist>());
    CHECK(auth.revocation(admitted.serial, "dev-001", admitted.serial_hex, admitted.fingerprint, now) == reason::ok);
}
