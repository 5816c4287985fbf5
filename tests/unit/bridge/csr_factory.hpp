#pragma once
// CSRs made in memory for the bridge's tests, benchmark and fuzz seeds.
#include "devicegate/ossl.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

namespace devicegate::test {

/// The text a PEM writer puts into a memory BIO.
template <class Write>
std::string pem_text(Write write) {
    bio_ptr bio(BIO_new(BIO_s_mem()));
    write(bio.get());
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

/// A P-256 key that spells out its curve (as `openssl ecparam -param_enc explicit` makes).
inline evp_pkey_ptr make_explicit_p256_key() {
    std::unique_ptr<EVP_PKEY_CTX, c_deleter<EVP_PKEY_CTX_free>> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("group", const_cast<char*>("P-256"), 0),
                           OSSL_PARAM_construct_utf8_string("encoding", const_cast<char*>("explicit"), 0),
                           OSSL_PARAM_construct_end()};
    EVP_PKEY* key = nullptr;
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_CTX_set_params(ctx.get(), params) != 1 ||
        EVP_PKEY_generate(ctx.get(), &key) != 1) {
        throw std::runtime_error("cannot make an explicit-parameter P-256 key");
    }
    return evp_pkey_ptr(key);
}

/// A copy of `cert` valid from `not_before` to `not_after`, signed again by `issuer_key`
/// (an expired or expiring Sub-CA with the real one's name and key).
inline x509_ptr with_validity(X509* cert, EVP_PKEY* issuer_key, std::time_t not_before, std::time_t not_after) {
    x509_ptr copy(X509_dup(cert));
    if (!copy || X509_time_adj_ex(X509_getm_notBefore(copy.get()), 0, 0, &not_before) == nullptr ||
        X509_time_adj_ex(X509_getm_notAfter(copy.get()), 0, 0, &not_after) == nullptr ||
        X509_sign(copy.get(), issuer_key, EVP_sha256()) == 0) {
        throw std::runtime_error("cannot re-sign a certificate");
    }
    return copy;
}

inline std::string cert_pem(X509* cert) {
    return pem_text([&](BIO* b) { return PEM_write_bio_X509(b, cert); });
}

/// "P-256", "P-384", "P-521", "secp256k1", "RSA-1024", "RSA-2048", "Ed25519".
inline evp_pkey_ptr make_key(const std::string& type) {
    EVP_PKEY* key = nullptr;
    if (type.rfind("RSA-", 0) == 0) key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(std::stoul(type.substr(4))));
    else if (type == "Ed25519") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    else key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", type.c_str());
    if (key == nullptr) throw std::runtime_error("cannot make a " + type + " key");
    return evp_pkey_ptr(key);
}

struct csr_spec {
    std::vector<std::pair<std::string, std::string>> subject;  // e.g. {{"CN","dev-1"}}
    std::vector<std::pair<int, std::string>> extensions;        // requested extensions (nid, conf value)
};

/// `signer` signs a CSR carrying `key`'s public key: with signer != key, the CSR does not
/// prove possession of `key`.
inline std::string make_csr_pem(EVP_PKEY* key, const csr_spec& spec, EVP_PKEY* signer = nullptr) {
    if (signer == nullptr) signer = key;
    std::unique_ptr<X509_REQ, c_deleter<X509_REQ_free>> req(X509_REQ_new());
    X509_NAME* name = X509_REQ_get_subject_name(req.get());
    for (const auto& [field, value] : spec.subject) {
        X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()),
                                   -1, -1, 0);
    }
    X509_REQ_set_pubkey(req.get(), key);
    if (!spec.extensions.empty()) {
        STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
        for (const auto& [nid, value] : spec.extensions) {
            sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(nullptr, nullptr, nid, value.c_str()));
        }
        X509_REQ_add_extensions(req.get(), exts);
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    const int id = EVP_PKEY_get_base_id(signer);
    if (X509_REQ_sign(req.get(), signer, id == EVP_PKEY_ED25519 ? nullptr : EVP_sha256()) <= 0) {
        throw std::runtime_error("cannot sign the CSR");
    }
    return pem_text([&](BIO* b) { return PEM_write_bio_X509_REQ(b, req.get()); });
}

inline std::string make_csr_pem(EVP_PKEY* key, const std::string& cn) { return make_csr_pem(key, csr_spec{{{"CN", cn}}, {}}); }

inline std::string key_pem(EVP_PKEY* key) {
    return pem_text([&](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
}

inline std::string public_key_pem(EVP_PKEY* key) {
    return pem_text([&](BIO* b) { return PEM_write_bio_PUBKEY(b, key); });
}

}  // namespace devicegate::test
