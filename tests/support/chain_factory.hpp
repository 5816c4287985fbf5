#pragma once
// Builds certificates with arbitrary extensions, keys and validity in memory (and writes
// them as PEM), for the tenant_trust refusal tests: whole CA chains with name and path
// length constraints, twins of a Sub-CA, leaves with unknown critical extensions.
#include "devicegate/pki.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace devicegate::test {

struct made_cert {
    x509_ptr cert;
    evp_pkey_ptr key;
};

/// A new P-256 key; `explicit_curve` encodes the curve parameters instead of the named curve.
inline evp_pkey_ptr new_p256_key(bool explicit_curve = false) {
    std::unique_ptr<EVP_PKEY_CTX, c_deleter<EVP_PKEY_CTX_free>> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    EVP_PKEY* key = nullptr;
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1) != 1 ||
        EVP_PKEY_keygen(ctx.get(), &key) != 1) {
        throw std::runtime_error("cannot generate a P-256 key");
    }
    evp_pkey_ptr out(key);
    char explicit_encoding[] = OSSL_PKEY_EC_ENCODING_EXPLICIT;
    if (explicit_curve && EVP_PKEY_set_utf8_string_param(out.get(), OSSL_PKEY_PARAM_EC_ENCODING, explicit_encoding) != 1) {
        throw std::runtime_error("cannot switch the key to explicit curve parameters");
    }
    return out;
}

struct cert_spec {
    std::string subject;  // "/CN=.../O=..." as openssl prints it
    /// Extensions as openssl.cnf lines: {"basicConstraints", "critical,CA:TRUE"}; an OID
    /// name with "critical,DER:05:00" makes an unknown extension. Repeats are kept.
    std::vector<std::pair<std::string, std::string>> extensions;
    long not_before = -3600;          // seconds from now
    long not_after = 30L * 86400;     // seconds from now
    std::string serial;               // hex, "-05" for a negative one; "" = 16 random octets
};

/// Issues `spec` with `issuer` (nullptr: self-signed) for `key` (a new key if empty).
inline made_cert make_cert(const cert_spec& spec, const made_cert* issuer, evp_pkey_ptr key = {}) {
    made_cert out;
    out.key = key ? std::move(key) : new_p256_key();
    out.cert.reset(X509_new());
    X509* cert = out.cert.get();
    X509_set_version(cert, X509_VERSION_3);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);
    std::unique_ptr<BIGNUM, c_deleter<BN_free>> bn(BN_bin2bn(serial, sizeof serial, nullptr));
    if (!spec.serial.empty()) {
        BIGNUM* given = nullptr;
        if (BN_hex2bn(&given, spec.serial.c_str()) == 0) throw std::runtime_error("bad serial " + spec.serial);
        bn.reset(given);
    }
    BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert));
    const std::time_t now = std::time(nullptr);
    ASN1_TIME_set(X509_getm_notBefore(cert), now + spec.not_before);
    ASN1_TIME_set(X509_getm_notAfter(cert), now + spec.not_after);
    std::unique_ptr<X509_NAME, c_deleter<X509_NAME_free>> name(X509_NAME_new());
    std::size_t pos = 1;
    while (pos < spec.subject.size()) {
        std::size_t end = spec.subject.find('/', pos);
        if (end == std::string::npos) end = spec.subject.size();
        std::string rdn = spec.subject.substr(pos, end - pos);
        std::size_t eq = rdn.find('=');
        X509_NAME_add_entry_by_txt(name.get(), rdn.substr(0, eq).c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(rdn.c_str() + eq + 1), -1, -1, 0);
        pos = end + 1;
    }
    X509_set_subject_name(cert, name.get());
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer->cert.get()) : name.get());
    X509_set_pubkey(cert, out.key.get());
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer->cert.get() : cert, cert, nullptr, nullptr, 0);
    for (const auto& [ext_name, value] : spec.extensions) {
        X509_EXTENSION* ext = X509V3_EXT_nconf(nullptr, &ctx, ext_name.c_str(), value.c_str());
        if (!ext) throw std::runtime_error("cannot build extension " + ext_name + " = " + value);
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (X509_sign(cert, issuer ? issuer->key.get() : out.key.get(), EVP_sha256()) == 0) {
        throw std::runtime_error("X509_sign failed");
    }
    return out;
}

inline const std::vector<std::pair<std::string, std::string>>& ca_extensions() {
    static const std::vector<std::pair<std::string, std::string>> e{
        {"basicConstraints", "critical,CA:TRUE"}, {"keyUsage", "critical,keyCertSign,cRLSign"},
        {"subjectKeyIdentifier", "hash"}, {"authorityKeyIdentifier", "keyid:always"}};
    return e;
}

/// What tests/pki issues to devices: CN = DNS SAN = id, clientAuth.
inline std::vector<std::pair<std::string, std::string>> device_extensions(const std::string& id) {
    return {{"basicConstraints", "critical,CA:FALSE"}, {"keyUsage", "critical,digitalSignature"},
            {"extendedKeyUsage", "clientAuth"},       {"subjectKeyIdentifier", "hash"},
            {"authorityKeyIdentifier", "keyid:always"}, {"subjectAltName", "DNS:" + id}};
}

/// The subject key identifier as openssl.cnf writes it ("AB:CD:..."), to copy into a twin.
inline std::string subject_key_id(X509* cert) {
    char* text = i2s_ASN1_OCTET_STRING(nullptr, X509_get0_subject_key_id(cert));
    std::string out = text ? text : "";
    OPENSSL_free(text);
    return out;
}

/// The forged twin of a CA: its subject and subject key id, another key, issued by `issuer`
/// (the tenant Sub-CA's twin issued by the ICA chains to the Root).
inline made_cert make_twin(const made_cert& real, const made_cert& issuer) {
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(real.cert.get()), subject, sizeof subject);
    return make_cert({subject,
                      {{"basicConstraints", "critical,CA:TRUE"},
                       {"keyUsage", "critical,keyCertSign,cRLSign"},
                       {"subjectKeyIdentifier", subject_key_id(real.cert.get())},
                       {"authorityKeyIdentifier", "keyid:always"}}},
                     &issuer);
}

inline void write_pem(const std::filesystem::path& path, const std::vector<X509*>& certs) {
    bio_ptr bio(BIO_new_file(path.c_str(), "w"));
    for (X509* c : certs) {
        if (!bio || PEM_write_bio_X509(bio.get(), c) != 1) throw std::runtime_error("cannot write " + path.string());
    }
}

inline void write_key(const std::filesystem::path& path, EVP_PKEY* key) {
    bio_ptr bio(BIO_new_file(path.c_str(), "w"));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        throw std::runtime_error("cannot write " + path.string());
    }
}

inline made_cert load_made(const std::string& cert_file, const std::string& key_file) {
    made_cert out;
    out.cert = std::move(parse_certificates(read_file(cert_file, max_certificate_file_bytes), cert_file).at(0));
    bio_ptr bio(BIO_new_file(key_file.c_str(), "r"));
    out.key.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!out.key) throw std::runtime_error("cannot read " + key_file);
    return out;
}

}  // namespace devicegate::test
