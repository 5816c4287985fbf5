#include "devicegate/ocsp.hpp"
#include "devicegate/tenant_trust.hpp"
#include "ocsp_craft.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>
#include <openssl/pem.h>

using namespace devicegate;
using namespace devicegate::test;
using namespace std::chrono_literals;

namespace {

struct fixture {
    std::shared_ptr<const tenant_trust> trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    x509_stack_ptr chain{sk_X509_new_null()};
    fixture() {
        sk_X509_push(chain.get(), trust->certificate(ca_role::ica));
        X509_up_ref(trust->certificate(ca_role::ica));
    }
    ocsp_answer verify(const ocsp_query& q, const std::string& der) {
        return verify_ocsp_response(der, q, trust->certificate(ca_role::sub_ca), chain.get(), trust->store(),
                                    std::time(nullptr), 60s, 3600s);
    }
};

}  // namespace

TEST_CASE("ocsp: good, revoked and unknown answers signed by the issuer or a delegated responder") {
    fixture f;
    auto leaf = load_cert(device_cert("dev-001"));
    auto q = make_ocsp_query(leaf.get(), f.trust->certificate(ca_role::sub_ca), false);
    CHECK(f.verify(q, craft(q, {})).status == ocsp_status::good);
    CHECK(f.verify(q, craft(q, {.status = V_OCSP_CERTSTATUS_REVOKED})).status == ocsp_status::revoked);
    CHECK(f.verify(q, craft(q, {.status = V_OCSP_CERTSTATUS_UNKNOWN})).status == ocsp_status::unknown);
    auto delegated = f.verify(q, craft(q, {.signer = "ocsp-responder"}));
    CHECK(delegated.status == ocsp_status::good);
    CHECK(delegated.next_update > delegated.this_update);
}

TEST_CASE("ocsp: untrustworthy answers are refused with their cause") {
    fixture f;
    auto leaf = load_cert(device_cert("dev-001"));
    auto q = make_ocsp_query(leaf.get(), f.trust->certificate(ca_role::sub_ca), true);
    CHECK(f.verify(q, craft(q, {.nonce = nonce_mode::echo})).status == ocsp_status::good);
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.signer = "subca-b"})), Catch::Contains("not trusted"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.signer = "ocsp-noeku"})), Catch::Contains("not trusted"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.about = "dev-003"})), Catch::Contains("not about the certificate asked for"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.this_update = std::time(nullptr) - 7200,
                                            .next_update = std::time(nullptr) - 3600})),
                      Catch::Contains("stale"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.this_update = std::time(nullptr) + 3600,
                                            .next_update = std::time(nullptr) + 7200})),
                      Catch::Contains("thisUpdate is in the future"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.nonce = nonce_mode::wrong})), Catch::Contains("nonce mismatch"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.response_status = OCSP_RESPONSE_STATUS_TRYLATER})),
                      Catch::Contains("responder answered trylater"));
    CHECK_THROWS_WITH(f.verify(q, "garbage"), Catch::Contains("not an OCSP response"));
    CHECK_THROWS_WITH(f.verify(q, ""), Catch::Contains("not an OCSP response"));
}

TEST_CASE("ocsp: an answer signed by an expired delegated responder is refused; the skew is honoured") {
    fixture f;
    auto leaf = load_cert(device_cert("dev-001"));
    auto q = make_ocsp_query(leaf.get(), f.trust->certificate(ca_role::sub_ca), false);
    const std::string der = craft(q, {.signer = "ocsp-expired"});  // expired 2021-01-01
    CHECK_THROWS_WITH(f.verify(q, der), Catch::Contains("the responder certificate") && Catch::Contains("expired"));
    // Within the clock skew of its expiry it still counts: verified as of 2021-01-01 00:00:30.
    const std::time_t just_after = 1609459230;
    const std::string then = craft(q, {.this_update = just_after - 60, .next_update = just_after + 3600,
                                       .signer = "ocsp-expired"});
    auto answer = verify_ocsp_response(then, q, f.trust->certificate(ca_role::sub_ca), f.chain.get(), f.trust->store(),
                                       just_after, 60s, 3600s);
    CHECK(answer.status == ocsp_status::good);
    CHECK_THROWS_WITH(verify_ocsp_response(then, q, f.trust->certificate(ca_role::sub_ca), f.chain.get(),
                                           f.trust->store(), just_after + 61, 60s, 3600s),
                      Catch::Contains("expired"));
}

TEST_CASE("ocsp: an answer without nextUpdate is accepted only while its thisUpdate is within ocsp_max_ttl and the "
          "skew") {
    fixture f;  // verifies with ocsp_max_ttl 3600s, clock skew 60s
    auto leaf = load_cert(device_cert("dev-001"));
    auto q = make_ocsp_query(leaf.get(), f.trust->certificate(ca_role::sub_ca), false);
    const std::time_t now = std::time(nullptr);
    // The replay of the finding: a genuine "good" signed a year ago, without nextUpdate.
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.this_update = now - 365 * 86400, .next_update = 0})),
                      Catch::Contains("stale: no nextUpdate, and thisUpdate was 3153") &&
                          Catch::Contains("s ago (ocsp_max_ttl 3600s, clock_skew 60s)"));
    CHECK_THROWS_WITH(f.verify(q, craft(q, {.this_update = now - 3600 - 90, .next_update = 0})),
                      Catch::Contains("stale: no nextUpdate"));
    CHECK(f.verify(q, craft(q, {.this_update = now - 3600 - 30, .next_update = 0})).next_update == 0);
    CHECK(f.verify(q, craft(q, {.status = V_OCSP_CERTSTATUS_REVOKED, .this_update = now - 5, .next_update = 0}))
              .status == ocsp_status::revoked);
    // With a nextUpdate still ahead, an old thisUpdate is the responder's promise: accepted.
    CHECK(f.verify(q, craft(q, {.this_update = now - 365 * 86400, .next_update = now + 3600})).status ==
          ocsp_status::good);
}

TEST_CASE("ocsp cache: an answer older than the one held never replaces it") {
    ocsp_cache cache(10, 600s);
    sha256_digest a{};
    a[0] = 1;
    const std::time_t now = 1'000'000;
    REQUIRE_FALSE(cache.store(a, {ocsp_status::revoked, now - 10, now + 300}, now));
    auto kept = cache.store(a, {ocsp_status::good, now - 11, 0}, now);
    REQUIRE(kept);
    CHECK(kept->status == ocsp_status::revoked);
    CHECK(kept->this_update == now - 10);
    CHECK(cache.lookup(a, now) == ocsp_status::revoked);
    // Also once the newer answer has expired: the older one is still a replay.
    CHECK(cache.store(a, {ocsp_status::good, now - 11, now + 900}, now + 400));
    CHECK_FALSE(cache.lookup(a, now + 400));
    // A "good" of the same second as the "revoked" held does not replace it.
    CHECK(cache.store(a, {ocsp_status::good, now - 10, now + 900}, now + 400));
    // A newer answer replaces it.
    CHECK_FALSE(cache.store(a, {ocsp_status::good, now - 9, now + 900}, now + 400));
    CHECK(cache.lookup(a, now + 400) == ocsp_status::good);
    CHECK_FALSE(cache.store(a, {ocsp_status::good, now - 9, now + 900}, now + 400));  // the same again
    CHECK_FALSE(cache.store(a, {ocsp_status::revoked, now + 399, now + 900}, now + 400));
    CHECK(cache.lookup(a, now + 400) == ocsp_status::revoked);
    // Without nextUpdate an answer is used until thisUpdate + ocsp_max_ttl, not now + ocsp_max_ttl.
    sha256_digest b{};
    b[0] = 2;
    REQUIRE_FALSE(cache.store(b, {ocsp_status::good, now - 500, 0}, now));
    CHECK(cache.lookup(b, now + 99) == ocsp_status::good);
    CHECK_FALSE(cache.lookup(b, now + 101));
}

TEST_CASE("ocsp: the responder URL from the Authority Information Access") {
    CHECK(ocsp_responder_url(load_cert(device_cert("dev-001")).get()).empty());
}

TEST_CASE("ocsp cache: until nextUpdate, bounded by the maximum TTL and in size") {
    ocsp_cache cache(3, 600s);
    sha256_digest a{}, b{};
    a[0] = 1;
    b[0] = 2;
    const std::time_t now = 1'000'000;
    cache.store(a, {ocsp_status::good, now, now + 60}, now);
    CHECK(cache.lookup(a, now + 59) == ocsp_status::good);
    CHECK_FALSE(cache.lookup(a, now + 61));
    cache.store(b, {ocsp_status::revoked, now, 0}, now);  // no nextUpdate: max TTL
    CHECK(cache.lookup(b, now + 599) == ocsp_status::revoked);
    CHECK_FALSE(cache.lookup(b, now + 601));

    auto leaf = load_cert(device_cert("dev-001"));
    sha256_digest c{};
    c[0] = 3;
    CHECK(cache.begin_fetch(c, leaf.get(), "01", now));
    CHECK_FALSE(cache.begin_fetch(c, leaf.get(), "01", now));  // one fetch at a time
    cache.end_fetch(c);
    cache.store_failure(c, now + 5);
    CHECK_FALSE(cache.begin_fetch(c, leaf.get(), "01", now + 4));  // not before retry_after
    CHECK(cache.begin_fetch(c, leaf.get(), "01", now + 6));
    cache.end_fetch(c);
    cache.set_active(c, true);
    CHECK(cache.due_for_refresh(now + 6, 60s).size() == 1);  // active, no answer yet

    for (unsigned char i = 10; i < 20; ++i) {
        sha256_digest d{};
        d[0] = i;
        cache.store(d, {ocsp_status::good, now, now + 60}, now);
        CHECK(cache.size() <= 3);
    }
}
