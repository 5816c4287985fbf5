#include "csr_factory.hpp"
#include "devicegate/tenant_trust.hpp"
#include "embedded_ca.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <openssl/x509v3.h>

using namespace devicegate;
using namespace devicegate::bridge;
using devicegate::test::csr_spec;
using devicegate::test::make_csr_pem;
using devicegate::test::make_key;
using devicegate::test::pki;

namespace {

embedded_ca::options options_in(const test::temp_dir& dir) {
    embedded_ca::options o;
    o.ca_cert_file = pki("subca-a.crt");
    o.ca_key_file = pki("subca-a.key");
    o.state_dir = dir.file("state");
    o.profile.validity = std::chrono::hours(48);
    return o;
}

x509_req_ptr checked_csr(EVP_PKEY* key, const csr_spec& spec, const std::string& id) {
    auto r = check_csr(make_csr_pem(key, spec), id);
    REQUIRE(r.problem == csr_problem::ok);
    return std::move(r.csr);
}

x509_crl_ptr crl_of(const embedded_ca& ca) {
    const std::string der = ca.crl_der();
    auto crls = parse_crls(der, "crl");
    REQUIRE(crls.size() == 1);
    return std::move(crls[0]);
}

bool crl_lists(X509_CRL* crl, X509* cert) {
    X509_REVOKED* entry = nullptr;
    return X509_CRL_get0_by_serial(crl, &entry, X509_get0_serialNumber(cert)) == 1;
}

}  // namespace

TEST_CASE("embedded CA: the server's profile, whatever the CSR asks for", "[bridge][ca]") {
    test::temp_dir dir;
    embedded_ca ca(options_in(dir));
    auto key = make_key("P-256");
    // The CSR asks to be a CA with a foreign SAN: both are ignored.
    auto csr = checked_csr(key.get(),
                           csr_spec{{{"CN", "dev-7"}},
                                    {{NID_basic_constraints, "critical,CA:TRUE"}, {NID_subject_alt_name, "DNS:evil.example"}}},
                           "dev-7");
    auto issued = ca.issue(csr.get(), "dev-7");
    auto cert = std::move(parse_certificates(issued.certificate_pem, "issued").at(0));
    CHECK(X509_check_ca(cert.get()) == 0);
    CHECK((X509_get_extended_key_usage(cert.get()) & XKU_SSL_CLIENT) != 0);
    CHECK(X509_check_host(cert.get(), "dev-7", 0, 0, nullptr) == 1);
    CHECK(X509_check_host(cert.get(), "evil.example", 0, 0, nullptr) == 0);
    CHECK(serial_hex(X509_get0_serialNumber(cert.get())) == issued.serial_hex);
    const std::time_t now = std::time(nullptr);
    CHECK(to_time_t(X509_get0_notBefore(cert.get())) <= now - 50);
    CHECK(std::abs(to_time_t(X509_get0_notAfter(cert.get())) - (now + 48 * 3600)) < 5);
    // The broker's own check accepts it.
    auto trust = tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    auto v = trust->verify(cert.get());
    CHECK(v.why == reason::ok);
    CHECK(v.detail == "");
    REQUIRE(v.cert);
    CHECK(v.cert->device_id == "dev-7");
}

TEST_CASE("embedded CA: a revocation is in the next CRL and survives a restart", "[bridge][ca]") {
    test::temp_dir dir;
    auto key = make_key("P-384");
    std::string kept_pem, revoked_pem, revoked_serial;
    {
        embedded_ca ca(options_in(dir));
        kept_pem = ca.issue(checked_csr(key.get(), {{{"CN", "a"}}, {}}, "a").get(), "a").certificate_pem;
        auto revoked = ca.issue(checked_csr(key.get(), {{{"CN", "b"}}, {}}, "b").get(), "b");
        revoked_pem = revoked.certificate_pem;
        revoked_serial = revoked.serial_hex;
        CHECK_FALSE(ca.is_revoked(revoked_serial));
        ca.revoke(revoked_serial, 1);
        CHECK(ca.is_revoked(revoked_serial));
        CHECK_THROWS_AS(ca.revoke(revoked_serial, 1), signer_not_found);
        CHECK_THROWS_AS(ca.revoke("0102", 1), signer_not_found);
    }
    embedded_ca again(options_in(dir));
    CHECK(again.issued_count() == 2);
    CHECK(again.is_revoked(revoked_serial));
    auto crl = crl_of(again);
    auto kept = parse_certificates(kept_pem, "kept");
    auto revoked = parse_certificates(revoked_pem, "revoked");
    CHECK(crl_lists(crl.get(), revoked[0].get()));
    CHECK_FALSE(crl_lists(crl.get(), kept[0].get()));
    // Signed by the Sub-CA.
    auto sub_ca = test::load_cert(pki("subca-a.crt"));
    CHECK(X509_CRL_verify(crl.get(), X509_get0_pubkey(sub_ca.get())) == 1);
}

TEST_CASE("embedded CA: a key that does not match the certificate, or a damaged index, stops it", "[bridge][ca]") {
    test::temp_dir dir;
    auto o = options_in(dir);
    o.ca_key_file = pki("subca-b.key");
    CHECK_THROWS_WITH(embedded_ca(o), Catch::Contains("does not belong to"));
    o = options_in(dir);
    std::filesystem::create_directories(o.state_dir);
    test::write_file(o.state_dir + "/index.txt", "issued 0A dev 1\nrevoked 0B 1 1\n");
    CHECK_THROWS_WITH(embedded_ca(o), Catch::Contains("line 2 is damaged"));
}
