// Renewal's CRL decision (renewal_crls.hpp) and the revoke body (revoke_request.hpp).
#include "renewal_crls.hpp"
#include "revoke_request.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <ctime>

using namespace devicegate;
using namespace devicegate::bridge;
using devicegate::test::pki;

namespace {

std::shared_ptr<const tenant_trust> trust() { return tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt")); }

std::shared_ptr<const crl_set> set_of(const std::vector<std::string>& files, std::vector<missing_crl_source> missing = {}) {
    std::vector<verified_crl> crls;
    for (const auto& f : files) {
        for (auto& c : load_crl_file(pki(f), *trust())) crls.push_back(std::move(c));
    }
    return std::make_shared<const crl_set>(std::move(crls), *trust(), 1, std::move(missing));
}

serial_key serial(const std::string& device) {
    auto cert = parse_certificates(read_file(pki("devices/" + device + ".crt"), max_certificate_file_bytes), device);
    return make_serial_key(X509_get0_serialNumber(cert.at(0).get()));
}

}  // namespace

TEST_CASE("renewal CRL verdict: listed, chain revoked, stale, missing, or fine", "[bridge][crl]") {
    const std::time_t now = std::time(nullptr);
    crl_settings s;
    s.files = {"/crl/a.pem"};
    const auto listed = set_of({"subca-a-revokes-dev-002.crl.pem"});
    auto v = judge_crls(listed.get(), serial("dev-002"), now, s);
    CHECK(v.why == crl_refusal_kind::revoked);
    CHECK_THAT(v.detail, Catch::Contains("subca-a-revokes-dev-002.crl.pem"));
    CHECK(judge_crls(listed.get(), serial("dev-001"), now, s).why == crl_refusal_kind::none);

    const auto chain = set_of({"subca-a.crl.pem", "ica-revokes-subca-a.crl.pem"});
    CHECK(judge_crls(chain.get(), serial("dev-001"), now, s).why == crl_refusal_kind::ca_revoked);

    const auto stale = set_of({"subca-a-stale.crl.pem"});
    v = judge_crls(stale.get(), serial("dev-001"), now, s);
    CHECK(v.why == crl_refusal_kind::stale);
    CHECK_THAT(v.detail, Catch::Contains("subca-a-stale.crl.pem") && Catch::Contains("nextUpdate"));
    s.stale = stale_policy::allow;  // the plugin's crl_stale_policy allow: the last good CRL decides
    CHECK(judge_crls(stale.get(), serial("dev-001"), now, s).why == crl_refusal_kind::none);
    CHECK(judge_crls(stale.get(), serial("dev-revoked"), now, s).why == crl_refusal_kind::revoked);
    s.stale = stale_policy::deny;

    // A source that never delivered: within crl_grace the plugin admits, and so does renewal
    // when the Sub-CA's CRL is in force from another source; past crl_grace it is stale.
    const auto missing_recent = set_of({"subca-a.crl.pem"}, {{"http://ca/crl", now - 60}});
    CHECK(judge_crls(missing_recent.get(), serial("dev-001"), now, s).why == crl_refusal_kind::none);
    const auto missing_long = set_of({"subca-a.crl.pem"}, {{"http://ca/crl", now - 2 * 86400}});
    v = judge_crls(missing_long.get(), serial("dev-001"), now, s);
    CHECK(v.why == crl_refusal_kind::stale);
    CHECK_THAT(v.detail, Catch::Contains("http://ca/crl"));

    // No Sub-CA CRL at all (only the ICA's, or nothing yet): renewal waits, whatever the policy.
    s.stale = stale_policy::allow;
    const auto only_ica = set_of({"ica.crl.pem"}, {{"http://ca/crl", now}});
    v = judge_crls(only_ica.get(), serial("dev-001"), now, s);
    CHECK(v.why == crl_refusal_kind::unavailable);
    CHECK_THAT(v.detail, Catch::Contains("/crl/a.pem"));
    CHECK(judge_crls(nullptr, serial("dev-001"), now, s).why == crl_refusal_kind::unavailable);
}

TEST_CASE("revoke body: defaults, and each bad member named; reason_code checked on its 64-bit value", "[bridge][request]") {
    const auto d = parse_revoke_request("");
    CHECK(d.reason == "revoked by operator");
    CHECK(d.reason_code == 0);
    CHECK_FALSE(d.decommission);
    const auto full = parse_revoke_request(R"({"reason":"stolen","reason_code":10,"decommission":true})");
    CHECK(full.reason == "stolen");
    CHECK(full.reason_code == 10);
    CHECK(full.decommission);
    CHECK(parse_revoke_request(R"({"reason_code":0})").reason_code == 0);
    CHECK(parse_revoke_request(R"({"reason":")" + std::string(300, 'x') + "\"}").reason.size() == 200);
    // 4294967297 is 2^32 + 1: get<int>() wrapped it to 1 (keyCompromise) and it passed.
    for (const char* code : {"4294967297", "4294967303", "-4294967295", "9223372036854775808", "18446744073709551615",
                             "18446744073709551617", "-1", "7", "11", "1.0", "\"1\"", "null", "true"}) {
        INFO(code);
        CHECK_THROWS_WITH(parse_revoke_request(std::string(R"({"reason_code":)") + code + "}"), Catch::Contains("reason_code"));
    }
    CHECK_THROWS_WITH(parse_revoke_request("{"), Catch::Contains("JSON object"));
    CHECK_THROWS_WITH(parse_revoke_request("[]"), Catch::Contains("JSON object"));
    CHECK_THROWS_WITH(parse_revoke_request(R"({"reason":5})"), Catch::Contains("reason must be a string"));
    CHECK_THROWS_WITH(parse_revoke_request(R"({"decommission":"yes"})"), Catch::Contains("decommission"));
}
