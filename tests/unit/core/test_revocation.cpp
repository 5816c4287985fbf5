#include "devicegate/crl_set.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;
using namespace devicegate::test;
using namespace std::chrono_literals;

namespace {
std::shared_ptr<const tenant_trust> trust_a() {
    return tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
}
serial_key serial_of(const std::string& device) {
    auto cert = load_cert(device_cert(device));
    return make_serial_key(X509_get0_serialNumber(cert.get()));
}
}  // namespace

TEST_CASE("revocation: CRLs are verified against the tenant chain") {
    auto trust = trust_a();
    SECTION("the Sub-CA's CRL") {
        auto crls = load_crl_file(pki("subca-a.crl.pem"), *trust);
        REQUIRE(crls.size() == 1);
        CHECK(crls[0].issuer == ca_role::sub_ca);
        CHECK(crls[0].revoked == std::vector<serial_key>{serial_of("dev-revoked")});
        CHECK(crls[0].next_update > crls[0].this_update);
        // A snapshot shares the CRL's serial array instead of copying it (one copy in memory).
        crl_set snapshot(crls, *trust, 1);
        CHECK(&snapshot.revoked_leaves() == &crls[0].revoked.get());
        CHECK(snapshot.check(serial_of("dev-revoked"), crls[0].this_update, std::chrono::seconds(60),
                             stale_policy::deny).why == reason::revoked_crl);
    }
    SECTION("ICA and Root CRLs are recognised by their issuer") {
        CHECK(load_crl_file(pki("ica.crl.pem"), *trust).at(0).issuer == ca_role::ica);
        CHECK(load_crl_file(pki("root.crl.pem"), *trust).at(0).issuer == ca_role::root);
    }
    SECTION("another tenant's CRL is refused") {
        CHECK_THROWS_WITH(load_crl_file(pki("subca-b.crl.pem"), *trust),
                          Catch::Contains("is none of the configured Sub-CA, ICA or Root"));
    }
    SECTION("a CRL with our Sub-CA's name but signed by another key is refused") {
        CHECK_THROWS_WITH(load_crl_file(pki("subca-a-forged.crl.pem"), *trust),
                          Catch::Contains("CRL signature does not verify against the tenant Sub-CA"));
    }
}

TEST_CASE("revocation: snapshot decisions") {
    auto trust = trust_a();
    const std::time_t now = std::time(nullptr);
    auto crls = load_crl_file(pki("subca-a.crl.pem"), *trust);
    auto ica = load_crl_file(pki("ica.crl.pem"), *trust);
    crls.insert(crls.end(), ica.begin(), ica.end());
    crl_set snap(crls, *trust, 1);

    CHECK(snap.check(serial_of("dev-revoked"), now, 24h, stale_policy::deny).why == reason::revoked_crl);
    CHECK(snap.check(serial_of("dev-001"), now, 24h, stale_policy::deny).why == reason::ok);
    CHECK_FALSE(snap.chain_revoked());

    SECTION("a Sub-CA on the ICA's CRL revokes every device") {
        auto revoking = load_crl_file(pki("ica-revokes-subca-a.crl.pem"), *trust);
        crl_set s2(revoking, *trust, 2);
        CHECK(s2.chain_revoked());
        CHECK_THAT(s2.chain_detail(), Catch::Contains("tenant Sub-CA is revoked"));
        CHECK(s2.check(serial_of("dev-001"), now, 24h, stale_policy::deny).why == reason::ca_revoked);
    }
    SECTION("a CRL past nextUpdate: grace, then the policy") {
        auto stale = load_crl_file(pki("subca-a-stale.crl.pem"), *trust);
        crl_set s3(stale, *trust, 3);
        const std::time_t next = stale[0].next_update;
        CHECK(s3.check(serial_of("dev-001"), next + 3599, 1h, stale_policy::deny).why == reason::ok);
        auto status = s3.check(serial_of("dev-001"), next + 3601, 1h, stale_policy::deny);
        CHECK(status.why == reason::crl_stale);
        REQUIRE(status.crl != nullptr);
        CHECK_THAT(status.crl->source, Catch::Contains("subca-a-stale.crl.pem"));
        CHECK(s3.check(serial_of("dev-001"), next + 3601, 1h, stale_policy::allow).why == reason::ok);
    }
    SECTION("newly revoked serials are the set difference") {
        auto later = load_crl_file(pki("subca-a-revokes-dev-002.crl.der"), *trust);
        crl_set s4(later, *trust, 4);
        CHECK(newly_revoked(snap.revoked_leaves(), s4.revoked_leaves()) == std::vector<serial_key>{serial_of("dev-002")});
        CHECK(newly_revoked(s4.revoked_leaves(), snap.revoked_leaves()).empty());
    }
}

TEST_CASE("revocation: a serial found clear is searched again only in another snapshot") {
    auto trust = trust_a();
    const std::time_t now = std::time(nullptr);
    // The same generation on purpose: the memo is keyed by the snapshot, not by the number.
    crl_set before(load_crl_file(pki("subca-a.crl.pem"), *trust), *trust, 1);
    crl_set after(load_crl_file(pki("subca-a-revokes-dev-002.crl.der"), *trust), *trust, 1);
    CHECK(before.instance() != 0);
    CHECK(before.instance() != after.instance());

    std::uint32_t clear = 0;
    REQUIRE(before.check(serial_of("dev-002"), now, 24h, stale_policy::deny, &clear).why == reason::ok);
    CHECK(clear == before.instance());
    CHECK(before.check(serial_of("dev-002"), now, 24h, stale_policy::deny, &clear).why == reason::ok);
    // The memo of one snapshot is worthless in the next: dev-002 is revoked there.
    CHECK(after.check(serial_of("dev-002"), now, 24h, stale_policy::deny, &clear).why == reason::revoked_crl);
    CHECK(clear == before.instance());
    // A revoked serial never gets a memo.
    std::uint32_t revoked = 0;
    CHECK(before.check(serial_of("dev-revoked"), now, 24h, stale_policy::deny, &revoked).why == reason::revoked_crl);
    CHECK(revoked == 0);

    SECTION("the memo skips only the serial search: a revoked chain and staleness still refuse") {
        auto crls = load_crl_file(pki("subca-a-stale.crl.pem"), *trust);
        const std::time_t next = crls[0].next_update;
        crl_set stale(crls, *trust, 1);
        std::uint32_t memo = 0;
        REQUIRE(stale.check(serial_of("dev-001"), next, 1h, stale_policy::deny, &memo).why == reason::ok);
        REQUIRE(memo == stale.instance());
        CHECK(stale.check(serial_of("dev-001"), next + 3601, 1h, stale_policy::deny, &memo).why == reason::crl_stale);

        auto ica = load_crl_file(pki("ica-revokes-subca-a.crl.pem"), *trust);
        auto leaf = load_crl_file(pki("subca-a.crl.pem"), *trust);
        leaf.insert(leaf.end(), ica.begin(), ica.end());
        crl_set revoked_chain(leaf, *trust, 1);
        std::uint32_t chain_memo = revoked_chain.instance();
        CHECK(revoked_chain.check(serial_of("dev-001"), now, 24h, stale_policy::deny, &chain_memo).why ==
              reason::ca_revoked);
    }
}
