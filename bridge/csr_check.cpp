#include "csr_check.hpp"

#include <openssl/core_names.h>
#include <openssl/pem.h>

#include <optional>

namespace devicegate::bridge {

std::string_view to_string(csr_problem p) noexcept {
    switch (p) {
        case csr_problem::ok: return "ok";
        case csr_problem::not_pem: return "csr_unparsable";
        case csr_problem::bad_signature: return "csr_bad_signature";
        case csr_problem::weak_key: return "csr_key_refused";
        case csr_problem::explicit_ec_parameters: return "csr_key_explicit_parameters";
        case csr_problem::bad_subject: return "csr_bad_subject";
        case csr_problem::cn_mismatch: return "csr_cn_mismatch";
    }
    return "unknown";
}

bool has_explicit_ec_parameters(EVP_PKEY* key) {
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) return false;
    char encoding[32] = {};
    std::size_t len = 0;
    // OpenSSL 3: OSSL_PKEY_EC_ENCODING_GROUP ("named_curve") or _EXPLICIT ("explicit"); a key that
    // does not say is treated as explicit (refused).
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, encoding, sizeof encoding, &len) != 1) return true;
    return std::string_view(encoding, len) != OSSL_PKEY_EC_ENCODING_GROUP;
}

std::string allowed_key_type(EVP_PKEY* key) {
    switch (EVP_PKEY_get_base_id(key)) {
        case EVP_PKEY_EC: {
            if (has_explicit_ec_parameters(key)) return "";
            char group[64] = {};
            std::size_t len = 0;
            if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) return "";
            const std::string_view g(group, len);
            if (g == "prime256v1" || g == "P-256") return "P-256";
            if (g == "secp384r1" || g == "P-384") return "P-384";
            return "";
        }
        case EVP_PKEY_RSA: {
            const int bits = EVP_PKEY_get_bits(key);
            if (bits < 2048 || bits > 8192) return "";
            return "RSA-" + std::to_string(bits);
        }
        case EVP_PKEY_ED25519: return "Ed25519";
        default: return "";
    }
}

namespace {

constexpr std::string_view pem_begin = "-----BEGIN CERTIFICATE REQUEST-----";

csr_result fail(csr_problem p, std::string detail) {
    csr_result r;
    r.problem = p;
    r.detail = std::move(detail);
    return r;
}

/// The subject's only entry must be one CN (UTF8/printable): returns it, or nullopt.
std::optional<std::string> single_cn(X509_REQ* req) {
    X509_NAME* name = X509_REQ_get_subject_name(req);
    if (X509_NAME_entry_count(name) != 1) return std::nullopt;
    X509_NAME_ENTRY* e = X509_NAME_get_entry(name, 0);
    if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != NID_commonName) return std::nullopt;
    ASN1_STRING* s = X509_NAME_ENTRY_get_data(e);
    const int type = ASN1_STRING_type(s);
    if (type != V_ASN1_UTF8STRING && type != V_ASN1_PRINTABLESTRING && type != V_ASN1_IA5STRING) return std::nullopt;
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
}

}  // namespace

csr_result check_csr(std::string_view pem, std::string_view device_id) {
    if (pem.size() > max_csr_bytes) return fail(csr_problem::not_pem, "the CSR is larger than 16 KiB");
    // Exactly one PEM block, so nothing rides along unnoticed.
    const auto first = pem.find(pem_begin);
    if (first == std::string_view::npos) return fail(csr_problem::not_pem, "no PEM CERTIFICATE REQUEST block");
    if (pem.find(pem_begin, first + 1) != std::string_view::npos) {
        return fail(csr_problem::not_pem, "more than one CERTIFICATE REQUEST block");
    }
    bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    x509_req_ptr req(bio ? PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!req) {
        take_openssl_errors();
        return fail(csr_problem::not_pem, "the CERTIFICATE REQUEST block does not parse");
    }
    return check_csr(std::move(req), device_id);
}

std::string csr_common_name(X509_REQ* req) { return single_cn(req).value_or(""); }

csr_result check_csr(x509_req_ptr req, std::string_view device_id) {
    if (!req) return fail(csr_problem::not_pem, "no CSR");
    EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
    if (key == nullptr) return fail(csr_problem::not_pem, "the CSR has no usable public key");
    if (has_explicit_ec_parameters(key)) {
        take_openssl_errors();
        return fail(csr_problem::explicit_ec_parameters,
                    "the EC key carries explicit curve parameters; use a named curve (openssl: -param_enc named_curve, "
                    "the default): TLS refuses certificates with explicit ECC parameters");
    }
    const std::string type = allowed_key_type(key);
    if (type.empty()) {
        take_openssl_errors();
        return fail(csr_problem::weak_key, "key refused; allowed: EC P-256, EC P-384, RSA 2048..8192 bits, Ed25519");
    }
    if (X509_REQ_verify(req.get(), key) != 1) {
        take_openssl_errors();
        return fail(csr_problem::bad_signature, "the CSR's signature does not verify with its public key");
    }
    auto cn = single_cn(req.get());
    if (!cn) return fail(csr_problem::bad_subject, "the subject must be exactly one CN");
    if (*cn != device_id) return fail(csr_problem::cn_mismatch, "the subject CN is not the device id of the URL");
    csr_result r;
    r.problem = csr_problem::ok;
    r.key_type = type;
    r.csr = std::move(req);
    return r;
}

}  // namespace devicegate::bridge
