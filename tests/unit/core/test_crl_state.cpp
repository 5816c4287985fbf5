#include "devicegate/crl_der.hpp"
#include "devicegate/crl_state.hpp"
#include "../../../bench/big_crl.hpp"
#include "crl_factory.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

using namespace devicegate;
using namespace devicegate::test;

namespace {

std::shared_ptr<const tenant_trust> trust() {
    return tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
}

x509_crl_ptr crl(const std::string& name) {
    return std::move(parse_crls(read_file(pki(name), max_crl_file_bytes), name).at(0));
}

std::size_t entries(const crl_state& s, ca_role role) {
    const verified_crl* c = s.current(role);
    return c == nullptr ? 0 : c->revoked.size();
}

}  // namespace

TEST_CASE("crl state: one CRL in force per issuing CA, whatever source delivers it") {
    crl_state state(trust(), {});
    const std::time_t now = std::time(nullptr);
    CHECK(state.offer(crl("subca-a.crl.pem").get(), "a", now).changed);
    CHECK(state.offer(crl("ica.crl.pem").get(), "b", now).changed);
    state.set_delivered("a", {ca_role::sub_ca}, now);
    state.set_delivered("b", {ca_role::ica}, now);
    CHECK(state.in_force().size() == 2);
    CHECK(state.undelivered().empty());

    // Source "a" now delivers the ICA's (genuine) CRL: the Sub-CA's stays in force, stale from now.
    auto r = state.offer(crl("ica.crl.pem").get(), "a", now + 10);
    CHECK(r.refusal == crl_refusal::none);
    CHECK(r.issuer == ca_role::ica);
    CHECK_FALSE(r.changed);
    CHECK(state.set_delivered("a", {ca_role::ica}, now + 10));
    CHECK_FALSE(state.set_delivered("a", {ca_role::ica}, now + 15));  // still stale since now + 10
    CHECK(entries(state, ca_role::sub_ca) == 1);
    auto missing = state.undelivered();
    REQUIRE(missing.size() == 1);
    CHECK(missing[0].since == now + 10);
    CHECK_THAT(missing[0].source, Catch::Contains("tenant Sub-CA"));

    // Delivered again (by any source): no longer stale.
    state.offer(crl("subca-a.crl.pem").get(), "b", now + 20);
    CHECK(state.set_delivered("b", {ca_role::ica, ca_role::sub_ca}, now + 20));
    CHECK(state.undelivered().empty());
}

TEST_CASE("crl state: an older CRL is a rollback, by CRL number or by thisUpdate") {
    crl_state state(trust(), {});
    const std::time_t now = std::time(nullptr);
    REQUIRE(state.offer(crl("subca-a-revokes-dev-002.crl.pem").get(), "a", now).changed);
    auto older = state.offer(crl("subca-a.crl.pem").get(), "a", now);
    CHECK(older.refusal == crl_refusal::rollback);
    CHECK_THAT(older.detail, Catch::Contains("CRL number 0x1000") && Catch::Contains("< CRL number 0x1002"));
    // A higher number with an earlier thisUpdate is no newer CRL either.
    auto stale = state.offer(crl("subca-a-stale.crl.pem").get(), "a", now);
    CHECK(stale.refusal == crl_refusal::rollback);
    CHECK(entries(state, ca_role::sub_ca) == 2);
    // The same CRL again is no change.
    auto same = state.offer(crl("subca-a-revokes-dev-002.crl.pem").get(), "b", now);
    CHECK(same.refusal == crl_refusal::none);
    CHECK_FALSE(same.changed);
    // Another CA's CRL and a forged one never reach the state.
    CHECK_THROWS_WITH(state.offer(crl("subca-b.crl.pem").get(), "a", now), Catch::Contains("none of the configured"));
    CHECK_THROWS_WITH(state.offer(crl("subca-a-forged.crl.pem").get(), "a", now),
                      Catch::Contains("signature does not verify"));
}

TEST_CASE("crl state: CRL versions compare by number (any length) and thisUpdate") {
    CHECK(is_rollback({"FF", 10}, {"100", 10}));
    CHECK_FALSE(is_rollback({"100", 10}, {"FF", 10}));
    CHECK(is_rollback({"3E9", 9}, {"3E8", 10}));  // earlier thisUpdate
    CHECK_FALSE(is_rollback({"", 10}, {"3E8", 10}));
    CHECK(is_rollback({"", 9}, {"3E8", 10}));
    CHECK_FALSE(is_rollback({"3E8", 10}, {"3E8", 10}));
}

TEST_CASE("crl state: a CRL dated beyond the clock skew is refused") {
    crl_state state(trust(), {.state_dir = "", .clock_skew = std::chrono::seconds(60)});
    const std::time_t now = std::time(nullptr);
    REQUIRE(state.offer(crl("subca-a.crl.pem").get(), "a", now).changed);
    auto future = state.offer(crl("subca-a-future.crl.pem").get(), "a", now);
    CHECK(future.refusal == crl_refusal::future_dated);
    CHECK_THAT(future.detail, Catch::Contains("s in the future (clock_skew 60s)"));
    CHECK(entries(state, ca_role::sub_ca) == 1);
    // The next correct CRL is not blocked by it.
    CHECK(state.offer(crl("subca-a-revokes-dev-002.crl.pem").get(), "a", now).changed);
    // Once the clock has reached its thisUpdate, it is an ordinary newer CRL.
    const std::time_t in_2035 = 2051222400;  // 2035-01-01
    crl_state later(trust(), {});
    REQUIRE(later.offer(crl("subca-a.crl.pem").get(), "a", in_2035).changed);
    CHECK(later.offer(crl("subca-a-future.crl.pem").get(), "a", in_2035).changed);
}

TEST_CASE("crl state: the newest CRL per CA survives a restart, so an older one is refused") {
    temp_dir dir;
    const std::time_t now = std::time(nullptr);
    {
        crl_state first(trust(), {.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)});
        auto r = first.offer(crl("subca-a-revokes-dev-002.crl.pem").get(), "a", now);
        CHECK(r.changed);
        CHECK(r.persist_error.empty());
        CHECK(first.offer(crl("ica.crl.pem").get(), "b", now).changed);
    }
    const std::string persisted = dir.path().string() + "/devicegate-crl-subca.der";
    REQUIRE(std::filesystem::exists(persisted));
    REQUIRE(std::filesystem::exists(dir.path().string() + "/devicegate-crl-ica.der"));

    crl_state second(trust(), {.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)});
    CHECK(second.load_persisted(now + 5).size() == 2);
    CHECK(entries(second, ca_role::sub_ca) == 2);
    CHECK(second.offer(crl("subca-a.crl.pem").get(), "a", now + 5).refusal == crl_refusal::rollback);
    CHECK(second.undelivered().size() == 2);  // stale until a source delivers them again
    CHECK(second.undelivered()[0].since == now + 5);

    SECTION("a damaged persisted CRL stops the start, naming the file and the way out") {
        write_file(persisted, "garbage");
        crl_state third(trust(), {.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)});
        CHECK_THROWS_WITH(third.load_persisted(now),
                          Catch::Contains(persisted) && Catch::Contains("delete the file to start from the configured CRLs"));
    }
    SECTION("another CA's CRL under the Sub-CA's name stops the start") {
        write_file(persisted, read_file(dir.path().string() + "/devicegate-crl-ica.der", max_crl_file_bytes));
        crl_state third(trust(), {.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)});
        CHECK_THROWS_WITH(third.load_persisted(now), Catch::Contains("holds the ICA's CRL"));
    }
    SECTION("a DER CRL is persisted exactly as received") {
        const std::string der = read_file(pki("subca-a-revokes-dev-002.crl.der"), max_crl_file_bytes);
        std::filesystem::remove(persisted);
        crl_state third(trust(), {.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)});
        auto parsed = parse_crls(der, "der");
        CHECK(third.offer(parsed.at(0).get(), "der", now, der).changed);
        CHECK(read_file(persisted, max_crl_file_bytes) == der);
    }
    SECTION("removed: the older CRL is accepted (the documented deliberate rollback)") {
        std::filesystem::remove(persisted);
        crl_state third(trust(), {.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)});
        CHECK(third.load_persisted(now).size() == 1);
        CHECK(third.offer(crl("subca-a.crl.pem").get(), "a", now).changed);
    }
}

TEST_CASE("crl precheck: signatures are checked on the raw DER, before the entries are decoded") {
    auto t = trust();
    temp_dir dir;
    const std::string forged = dir.file("forged.der"), genuine = dir.file("genuine.der");
    bench::write_big_crl(pki("forged-subca-a.crt"), pki("forged-subca-a.key"), 1000, {}, forged);
    bench::write_big_crl(pki("subca-a.crt"), pki("subca-a.key"), 1000, {}, genuine);
    CHECK_THROWS_WITH(precheck_crl_signatures(read_file(forged, max_crl_file_bytes), "f", *t),
                      Catch::Contains("f: CRL signature does not verify against the tenant Sub-CA"));
    CHECK_NOTHROW(precheck_crl_signatures(read_file(genuine, max_crl_file_bytes), "g", *t));
    // PEM blocks are checked one by one.
    CHECK_THROWS_WITH(precheck_crl_signatures(read_file(pki("subca-a-forged.crl.pem"), max_crl_file_bytes), "p", *t),
                      Catch::Contains("signature does not verify"));
    CHECK_THROWS_WITH(precheck_crl_signatures(read_file(pki("subca-b.crl.pem"), max_crl_file_bytes), "b", *t),
                      Catch::Contains("none of the configured"));
    CHECK_NOTHROW(precheck_crl_signatures(read_file(pki("ica.crl.pem"), max_crl_file_bytes), "i", *t));
    // One flipped byte inside the signed part.
    std::string tampered = read_file(genuine, max_crl_file_bytes);
    tampered[tampered.size() / 2] ^= 0x01;
    CHECK_THROWS_WITH(precheck_crl_signatures(tampered, "t", *t), Catch::Contains("signature does not verify"));
    // What is not a CRL's shape is left to the parser, which names the problem.
    CHECK_NOTHROW(precheck_crl_signatures("garbage", "x", *t));
    CHECK_NOTHROW(precheck_crl_signatures(std::string("\x30\x84\xff\xff\xff\xff", 6), "x", *t));
}

// ------------------------------------------------------------------ scope (RFC 5280 5.2, 5.3)

TEST_CASE("crl scope: a genuine newer CRL that is not complete for device certificates is refused and changes "
          "nothing, the persisted newest CRL number included") {
    temp_dir dir;
    const crl_state::options opts{.state_dir = dir.path().string(), .clock_skew = std::chrono::seconds(60)};
    crl_state state(trust(), opts);
    const std::time_t now = std::time(nullptr);
    REQUIRE(state.offer(crl("subca-a-revokes-dev-002.crl.pem").get(), "full", now).changed);
    const std::string persisted = state.persisted_file(ca_role::sub_ca);
    const std::string before = read_file(persisted, max_crl_file_bytes);

    struct variant {
        std::vector<crl_ext> extensions;
        std::vector<crl_ext> entry_extensions;
        const char* cause;
    };
    const auto v = GENERATE(
        variant{{{"issuingDistributionPoint", "critical,onlyCA:TRUE"}}, {}, "onlyContainsCACerts"},
        variant{{{"issuingDistributionPoint", "critical,onlyAA:TRUE"}}, {}, "onlyContainsAttributeCerts"},
        variant{{{"issuingDistributionPoint", "critical,onlysomereasons:keyCompromise"}}, {}, "onlySomeReasons"},
        variant{{{"issuingDistributionPoint", "critical,indirectCRL:TRUE"}}, {}, "indirectCRL"},
        variant{{{"1.3.6.1.4.1.99999.1", "critical,ASN1:NULL"}}, {},
                "a critical extension the plugin does not process (1.3.6.1.4.1.99999.1)"},
        variant{{}, {{"1.3.6.1.4.1.99999.2", "critical,ASN1:NULL"}},
                "an entry with a critical extension the plugin does not process (1.3.6.1.4.1.99999.2)"},
        variant{{}, {certificate_issuer(true)}, "indirect: an entry carries a certificateIssuer"},
        variant{{}, {certificate_issuer(false)}, "indirect: an entry carries a certificateIssuer"});
    CAPTURE(v.cause);
    // Newer by number and thisUpdate than the CRL in force, and listing none of its devices.
    auto narrow = make_crl({.number = 0x7000, .this_update = now, .revoked = {"dev-001"}, .extensions = v.extensions,
                            .entry_extensions = v.entry_extensions});
    CHECK_THROWS_WITH(state.offer(narrow.get(), "narrow", now + 1),
                      Catch::Contains("narrow: the tenant Sub-CA's CRL") && Catch::Contains(v.cause));
    CHECK(entries(state, ca_role::sub_ca) == 2);
    CHECK(state.current(ca_role::sub_ca)->source == "full");
    CHECK(read_file(persisted, max_crl_file_bytes) == before);
    // The refused CRL advanced nothing: a complete CRL numbered below it is no rollback, in
    // this run or the next.
    crl_state next_run(trust(), opts);
    REQUIRE(next_run.load_persisted(now + 2).size() == 1);
    auto complete = make_crl({.number = 0x5000, .this_update = now + 2, .revoked = {"dev-revoked"}});
    for (crl_state* s : {&state, &next_run}) {
        auto r = s->offer(complete.get(), "complete", now + 2);
        CHECK(r.refusal == crl_refusal::none);
        CHECK(r.changed);
        CHECK(entries(*s, ca_role::sub_ca) == 1);
    }
}

TEST_CASE("crl scope: step-ca's CRL (a distribution point only), onlyContainsUserCerts on the Sub-CA's CRL and "
          "onlyContainsCACerts on the ICA's are complete for what is checked against them") {
    crl_state state(trust(), {});
    const std::time_t now = std::time(nullptr);
    auto stepca = make_crl({.revoked = {"dev-revoked"},
                            .extensions = {stepca_idp(), {"authorityKeyIdentifier", "keyid:always"}},
                            .entry_extensions = {{"CRLReason", "DER:0A0101"},  // keyCompromise
                                                 {"invalidityDate", "DER:180F32303230303130313030303030305A"}}});
    auto r = state.offer(stepca.get(), "stepca", now);
    CHECK(r.refusal == crl_refusal::none);
    CHECK(state.current(ca_role::sub_ca)->distribution_point == "URI:https://ca.example:9000/1.0/crl");
    auto users = make_crl({.number = 0x7001, .extensions = {stepca_idp(), {"issuingDistributionPoint", "critical,onlyuser:TRUE"}}});
    // Two IDP extensions are malformed; one with both fields is what onlyContainsUserCerts looks like.
    CHECK_THROWS_WITH(state.offer(users.get(), "users", now), Catch::Contains("more than one issuingDistributionPoint"));
    users = make_crl({.number = 0x7001,
                      .extensions = {{"issuingDistributionPoint",
                                      "critical,fullname:URI:https://ca.example:9000/1.0/crl,onlyuser:TRUE"}}});
    CHECK(state.offer(users.get(), "users", now).changed);
    auto noncritical = make_crl({.number = 0x7002, .extensions = {{"1.3.6.1.4.1.99999.1", "ASN1:NULL"}}});
    CHECK(state.offer(noncritical.get(), "noncritical", now).changed);

    auto ica_cas = make_crl({.ca = "ica", .extensions = {{"issuingDistributionPoint", "critical,onlyCA:TRUE"}}});
    CHECK(state.offer(ica_cas.get(), "ica", now).changed);
    auto ica_users = make_crl({.ca = "ica", .number = 0x7001,
                               .extensions = {{"issuingDistributionPoint", "critical,onlyuser:TRUE"}}});
    CHECK_THROWS_WITH(state.offer(ica_users.get(), "ica-users", now),
                      Catch::Contains("the ICA's CRL is not complete for the CA certificates") &&
                          Catch::Contains("onlyContainsUserCerts"));
}

TEST_CASE("crl scope: a CRL for another distribution point (a partition) replaces neither a full CRL nor another "
          "partition's; a full CRL replaces a partition") {
    crl_state state(trust(), {});
    const std::time_t now = std::time(nullptr);
    auto partition = [&](const std::string& url, long number) {
        return make_crl({.number = number, .this_update = now, .extensions = {stepca_idp(url)}});
    };
    const bool full_first = GENERATE(false, true);
    if (full_first) {
        REQUIRE(state.offer(crl("subca-a-revokes-dev-002.crl.pem").get(), "full", now).changed);
        auto r = state.offer(partition("http://ca.example/part-2.crl", 0x7000).get(), "part-2", now);
        CHECK(r.refusal == crl_refusal::other_partition);
        CHECK_THAT(r.detail, Catch::Contains("names URI:http://ca.example/part-2.crl, the CRL in force from full has "
                                             "none (it covers every certificate)"));
        CHECK(entries(state, ca_role::sub_ca) == 2);
        return;
    }
    REQUIRE(state.offer(partition("http://ca.example/part-1.crl", 0x7000).get(), "part-1", now).changed);
    auto other = state.offer(partition("http://ca.example/part-2.crl", 0x7001).get(), "part-2", now);
    CHECK(other.refusal == crl_refusal::other_partition);
    CHECK_THAT(other.detail, Catch::Contains("names URI:http://ca.example/part-1.crl"));
    CHECK(state.current(ca_role::sub_ca)->source == "part-1");
    // The same distribution point, newer: taken. A CRL without one covers every certificate.
    CHECK(state.offer(partition("http://ca.example/part-1.crl", 0x7002).get(), "part-1", now).changed);
    auto full = make_crl({.number = 0x7003, .this_update = now, .revoked = {"dev-002"}});
    CHECK(state.offer(full.get(), "full", now).changed);
    CHECK(state.current(ca_role::sub_ca)->distribution_point.empty());
}
