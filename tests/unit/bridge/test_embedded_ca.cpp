#include "csr_factory.hpp"
#include "devicegate/crl_state.hpp"
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

namespace {

long crl_number(X509_CRL* crl) { return std::stol(version_of(crl).number, nullptr, 16); }

/// Sub-CA A's certificate, valid from `not_before` to `not_after`, written to `dir`.
std::string subca_a_valid(const test::temp_dir& dir, std::time_t not_before, std::time_t not_after) {
    auto cert = test::load_cert(pki("subca-a.crt"));
    auto ica_key = read_private_key(pki("ica.key"));
    const std::string path = dir.file("subca-a-" + std::to_string(not_after) + ".crt");
    test::write_file(path, test::cert_pem(test::with_validity(cert.get(), ica_key.get(), not_before, not_after).get()));
    return path;
}

}  // namespace

TEST_CASE("embedded CA: the CRL number keeps increasing across a restart after a burst of revocations",
          "[bridge][ca][crl]") {
    test::temp_dir dir;
    auto key = make_key("P-256");
    long before_restart = 0;
    crl_version old_version;
    {
        embedded_ca ca(options_in(dir));
        // Each revocation writes a CRL numbered one above the last: a burst runs ahead of the clock.
        for (int i = 0; i < 20; ++i) {
            const std::string id = "burst-" + std::to_string(i);
            ca.revoke(ca.issue(checked_csr(key.get(), {{{"CN", id}}, {}}, id).get(), id).serial_hex, 1);
        }
        auto crl = crl_of(ca);
        before_restart = crl_number(crl.get());
        old_version = version_of(crl.get());
        REQUIRE(before_restart > std::time(nullptr));  // ahead of the clock
    }
    embedded_ca again(options_in(dir));
    auto crl = crl_of(again);
    const long after_restart = crl_number(crl.get());
    CHECK(after_restart > before_restart);
    // The broker's rollback check (core crl_state) takes it.
    CHECK_FALSE(is_rollback(version_of(crl.get()), old_version));
    // And once more after the next revocation.
    again.revoke(again.issue(checked_csr(key.get(), {{{"CN", "late"}}, {}}, "late").get(), "late").serial_hex, 1);
    CHECK(crl_number(crl_of(again).get()) > after_restart);
}

TEST_CASE("embedded CA: a stored CRL that does not parse stops it, naming the file", "[bridge][ca][crl]") {
    test::temp_dir dir;
    auto o = options_in(dir);
    std::filesystem::create_directories(o.state_dir);
    test::write_file(o.state_dir + "/crl.der", "not a CRL");
    CHECK_THROWS_WITH(embedded_ca(o), Catch::Contains(o.state_dir + "/crl.der: cannot read the stored CRL's number"));
    CHECK(stored_crl_number(dir.file("none.der")) == 0);
}

TEST_CASE("embedded CA: an expired or not yet valid CA certificate stops it; too little validity left refuses issuance",
          "[bridge][ca][validity]") {
    test::temp_dir dir;
    const std::time_t now = std::time(nullptr);
    auto o = options_in(dir);
    o.ca_cert_file = subca_a_valid(dir, now - 7200, now - 3600);
    CHECK_THROWS_AS(embedded_ca(o), ca_validity_error);
    CHECK_THROWS_WITH(embedded_ca(o), Catch::Contains(o.ca_cert_file + ": the CA certificate expired at "));
    o.ca_cert_file = subca_a_valid(dir, now + 3600, now + 7200);
    CHECK_THROWS_WITH(embedded_ca(o), Catch::Contains(o.ca_cert_file + ": the CA certificate is not valid before "));

    // 30 minutes left: it starts (revocations and the CRL still work) but signs nothing.
    o.ca_cert_file = subca_a_valid(dir, now - 3600, now + 1800);
    embedded_ca ca(o);
    auto key = make_key("P-256");
    auto csr = checked_csr(key.get(), {{{"CN", "dev-1"}}, {}}, "dev-1");
    CHECK_THROWS_AS(ca.issue(csr.get(), "dev-1"), ca_validity_error);
    CHECK_THROWS_WITH(ca.issue(csr.get(), "dev-1"), Catch::Contains("less than 3600 s from now"));
    CHECK(ca.issued_count() == 0);
    // With a validity shorter than the minimum, what is left must cover that validity only.
    o.profile.validity = std::chrono::minutes(10);
    embedded_ca short_lived(o);
    CHECK(short_lived.issue(csr.get(), "dev-1").not_after <= now + 1800);

    auto cert = test::load_cert(pki("subca-a.crt"));
    const std::time_t not_after = to_time_t(X509_get0_notAfter(cert.get()));
    CHECK_NOTHROW(check_ca_validity(cert.get(), "f", not_after - 3600, std::chrono::seconds(3600)));
    CHECK_THROWS_WITH(check_ca_validity(cert.get(), "f", not_after - 3599, std::chrono::seconds(3600)),
                      Catch::Contains("f: the CA certificate expires at "));
    CHECK_THROWS_WITH(check_ca_validity(cert.get(), "f", not_after, std::chrono::seconds(0)),
                      Catch::Contains("f: the CA certificate expired at "));
}
