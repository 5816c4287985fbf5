#pragma once
// Genuine CRLs of the test PKI's CAs with whatever scope a test asks for: an
// issuingDistributionPoint (onlyContainsCACerts, onlySomeReasons, a distribution point, ...),
// an unknown critical extension, entry extensions (certificateIssuer, unknown critical ones),
// as a CA could sign them (the revocation scope tests, RFC 5280 sections 5.2 and 5.3).
#include "devicegate/pki.hpp"
#include "test_pki.hpp"

#include <openssl/pem.h>

#include <ctime>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace devicegate::test {

/// One extension as `openssl ca` would read it from a config (X509V3_EXT_nconf): a name or
/// OID and a value such as "critical,onlyCA:TRUE" or "critical,ASN1:NULL".
struct crl_ext {
    std::string name;
    std::string value;
};

struct crl_spec {
    std::string ca = "subca-a";           // <ca>.crt and <ca>.key of the test PKI
    long number = 0x7000;                 // CRL number: above every `openssl ca` CRL of the test PKI
    std::time_t this_update = std::time(nullptr);
    std::vector<std::string> revoked;     // device names (devices/<name>.crt)
    std::vector<crl_ext> extensions;      // CRL extensions
    std::vector<crl_ext> entry_extensions;  // added to every entry
};

inline x509_crl_ptr make_crl(const crl_spec& spec) {
    auto ca = load_cert(pki(spec.ca + ".crt"));
    bio_ptr key_bio(BIO_new_file(pki(spec.ca + ".key").c_str(), "r"));
    evp_pkey_ptr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr);
    x509_crl_ptr crl(X509_CRL_new());
    if (!key || !crl) throw std::runtime_error("cannot load the key of " + spec.ca);
    X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get()));
    asn1_time_ptr this_update(ASN1_TIME_set(nullptr, spec.this_update));
    asn1_time_ptr next_update(ASN1_TIME_set(nullptr, spec.this_update + 7 * 86400));
    X509_CRL_set1_lastUpdate(crl.get(), this_update.get());
    X509_CRL_set1_nextUpdate(crl.get(), next_update.get());
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca.get(), nullptr, nullptr, crl.get(), 0);
    auto make_ext = [&](const crl_ext& e) {
        X509_EXTENSION* ext = X509V3_EXT_nconf(nullptr, &ctx, e.name.c_str(), e.value.c_str());
        if (ext == nullptr) throw std::runtime_error("cannot make the extension " + e.name + " = " + e.value);
        return ext;
    };
    for (const auto& name : spec.revoked) {
        auto cert = load_cert(device_cert(name));
        X509_REVOKED* entry = X509_REVOKED_new();
        X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(cert.get()));
        X509_REVOKED_set_revocationDate(entry, this_update.get());
        for (const auto& e : spec.entry_extensions) {
            X509_EXTENSION* ext = make_ext(e);
            X509_REVOKED_add_ext(entry, ext, -1);
            X509_EXTENSION_free(ext);
        }
        X509_CRL_add0_revoked(crl.get(), entry);
    }
    asn1_integer_ptr number(ASN1_INTEGER_new());
    ASN1_INTEGER_set(number.get(), spec.number);
    X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0);
    for (const auto& e : spec.extensions) {
        X509_EXTENSION* ext = make_ext(e);
        X509_CRL_add_ext(crl.get(), ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_CRL_sort(crl.get());
    if (X509_CRL_sign(crl.get(), key.get(), EVP_sha256()) == 0) throw std::runtime_error("X509_CRL_sign failed");
    return crl;
}

/// make_crl written as PEM to `path`.
inline void write_crl(const crl_spec& spec, const std::string& path) {
    auto crl = make_crl(spec);
    const std::string tmp = path + ".tmp";
    {
        bio_ptr out(BIO_new_file(tmp.c_str(), "w"));
        if (!out || PEM_write_bio_X509_CRL(out.get(), crl.get()) != 1) throw std::runtime_error("cannot write " + tmp);
    }
    std::filesystem::rename(tmp, path);  // a watcher sees the old or the new CRL, never half of one
}

/// A certificateIssuer entry extension (an indirect CRL's entry, RFC 5280 section 5.3.3):
/// GeneralNames { dNSName "other-ca.example" }, as DER (OpenSSL cannot make it from text).
inline crl_ext certificate_issuer(bool critical) {
    return {"certificateIssuer", std::string(critical ? "critical," : "") + "DER:301282106F746865722D63612E6578616D706C65"};
}

/// The IDP of step-ca's stock CRL (authority/tls.go): critical, only a distributionPoint naming
/// the CA's /1.0/crl URL.
inline crl_ext stepca_idp(const std::string& url = "https://ca.example:9000/1.0/crl") {
    return {"issuingDistributionPoint", "critical,fullname:URI:" + url};
}

}  // namespace devicegate::test
