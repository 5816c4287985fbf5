#pragma once
// Issues many device certificates quickly (P-256 keys, signed by the test PKI's Sub-CA A)
// for storms of first connects. `openssl` per certificate would take minutes for thousands.
#include "devicegate/pki.hpp"

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace devicegate::test {

class cert_factory {
public:
    cert_factory(const std::string& ca_cert, const std::string& ca_key) {
        ca_ = std::move(parse_certificates(read_file(ca_cert, max_certificate_file_bytes), ca_cert).at(0));
        bio_ptr bio(BIO_new_file(ca_key.c_str(), "r"));
        key_.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
        if (!key_) throw std::runtime_error("cannot read " + ca_key);
    }

    /// Writes <dir>/<id>.crt and <dir>/<id>.key for a device certificate with CN = SAN = id
    /// (and a CRL Distribution Point, if given); returns the certificate.
    x509_ptr issue(const std::filesystem::path& dir, const std::string& id, const std::string& cdp_url = "") const {
        auto made = make(id, cdp_url);
        X509* cert = made.first.get();
        EVP_PKEY* key = made.second.get();
        write(dir / (id + ".crt"), [&](BIO* b) { return PEM_write_bio_X509(b, cert); });
        write(dir / (id + ".key"), [&](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
        return std::move(made.first);
    }

    /// A device certificate in memory (the key is thrown away): for jobs injected directly.
    std::string issue_pem(const std::string& id) const {
        auto made = make(id, "");
        bio_ptr bio(BIO_new(BIO_s_mem()));
        PEM_write_bio_X509(bio.get(), made.first.get());
        char* data = nullptr;
        long n = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<std::size_t>(n));
    }

private:
    std::pair<x509_ptr, evp_pkey_ptr> make(const std::string& id, const std::string& cdp_url) const {
        evp_pkey_ptr key(EVP_EC_gen("P-256"));
        x509_ptr cert(X509_new());
        if (!key || !cert) throw std::runtime_error("out of memory");
        X509_set_version(cert.get(), 2);
        unsigned char serial[16];
        RAND_bytes(serial, sizeof serial);
        serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x01);
        std::unique_ptr<BIGNUM, c_deleter<BN_free>> bn(BN_bin2bn(serial, sizeof serial, nullptr));
        BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
        X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
        X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7L * 86400);
        X509_NAME* name = X509_get_subject_name(cert.get());
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(id.c_str()), -1, -1, 0);
        X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_.get()));
        X509_set_pubkey(cert.get(), key.get());
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, ca_.get(), cert.get(), nullptr, nullptr, 0);
        const std::string san = "DNS:" + id;
        const std::string cdp = "URI:" + cdp_url;
        std::vector<std::pair<int, const char*>> extensions{{NID_basic_constraints, "critical,CA:FALSE"},
                                                            {NID_key_usage, "critical,digitalSignature"},
                                                            {NID_ext_key_usage, "clientAuth"},
                                                            {NID_authority_key_identifier, "keyid:always"},
                                                            {NID_subject_alt_name, san.c_str()}};
        if (!cdp_url.empty()) extensions.emplace_back(NID_crl_distribution_points, cdp.c_str());
        for (auto [nid, value] : extensions) {
            X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
            if (!ext) throw std::runtime_error("cannot build extension");
            X509_add_ext(cert.get(), ext, -1);
            X509_EXTENSION_free(ext);
        }
        if (X509_sign(cert.get(), key_.get(), EVP_sha256()) == 0) throw std::runtime_error("X509_sign failed");
        return {std::move(cert), std::move(key)};
    }

    template <class F>
    static void write(const std::filesystem::path& path, F&& f) {
        bio_ptr bio(BIO_new_file(path.c_str(), "w"));
        if (!bio || f(bio.get()) != 1) throw std::runtime_error("cannot write " + path.string());
    }
    x509_ptr ca_;
    evp_pkey_ptr key_;
};

}  // namespace devicegate::test
