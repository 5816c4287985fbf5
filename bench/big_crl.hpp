#pragma once
// Writes a DER CRL with `count` random serials (plus any extra serials given), signed by
// the given CA, for benchmarks. Uses OpenSSL directly: `openssl ca` needs minutes for 10^6.
#include "devicegate/pki.hpp"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <ctime>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace devicegate::bench {

inline void write_big_crl(const std::string& ca_cert_file, const std::string& ca_key_file, std::size_t count,
                          const std::vector<const ASN1_INTEGER*>& extra, const std::string& out_file,
                          bool pem = false) {
    auto ca = std::move(parse_certificates(read_file(ca_cert_file, max_certificate_file_bytes), ca_cert_file).at(0));
    bio_ptr key_bio(BIO_new_file(ca_key_file.c_str(), "r"));
    evp_pkey_ptr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) throw std::runtime_error("cannot read " + ca_key_file);

    std::unique_ptr<X509_CRL, c_deleter<X509_CRL_free>> crl(X509_CRL_new());
    X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get()));
    // thisUpdate = now: a CRL is in force only if it is not older than the one it replaces,
    // and the test PKI's CRLs may have been made seconds ago.
    asn1_time_ptr now(ASN1_TIME_set(nullptr, std::time(nullptr)));
    asn1_time_ptr next(ASN1_TIME_set(nullptr, std::time(nullptr) + 7 * 86400));
    X509_CRL_set1_lastUpdate(crl.get(), now.get());
    X509_CRL_set1_nextUpdate(crl.get(), next.get());
    auto add = [&](const ASN1_INTEGER* serial) {
        X509_REVOKED* r = X509_REVOKED_new();
        X509_REVOKED_set_serialNumber(r, const_cast<ASN1_INTEGER*>(serial));
        X509_REVOKED_set_revocationDate(r, now.get());
        X509_CRL_add0_revoked(crl.get(), r);
    };
    for (std::size_t i = 0; i < count; ++i) {
        unsigned char bytes[16];
        RAND_bytes(bytes, sizeof bytes);
        bytes[0] &= 0x7f;  // positive, like step-ca's serials
        bytes[0] |= 0x01;
        std::unique_ptr<BIGNUM, c_deleter<BN_free>> bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
        std::unique_ptr<ASN1_INTEGER, c_deleter<ASN1_INTEGER_free>> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
        add(serial.get());
    }
    for (const auto* serial : extra) add(serial);
    X509_CRL_sort(crl.get());
    if (X509_CRL_sign(crl.get(), key.get(), EVP_sha256()) == 0) throw std::runtime_error("X509_CRL_sign failed");
    if (pem) {
        bio_ptr out(BIO_new_file(out_file.c_str(), "w"));
        if (!out || PEM_write_bio_X509_CRL(out.get(), crl.get()) != 1) throw std::runtime_error("cannot write " + out_file);
        return;
    }
    unsigned char* der = nullptr;
    int len = i2d_X509_CRL(crl.get(), &der);
    if (len <= 0) throw std::runtime_error("i2d_X509_CRL failed");
    std::ofstream(out_file, std::ios::binary).write(reinterpret_cast<char*>(der), len);
    OPENSSL_free(der);
}

}  // namespace devicegate::bench
