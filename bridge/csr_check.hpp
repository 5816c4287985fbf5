#pragma once
// Checks of a certificate signing request before anything is signed: it parses (one PEM
// CSR, nothing else), its self-signature verifies (proof of possession of the key), its key
// meets the policy, and its subject is exactly CN=<device id>. Requested extensions are
// ignored: the certificate profile is the server's (see signer.hpp).
#include "devicegate/ossl.hpp"

#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>

namespace devicegate::bridge {

using x509_req_ptr = std::unique_ptr<X509_REQ, c_deleter<X509_REQ_free>>;

inline constexpr std::size_t max_csr_bytes = 16384;

enum class csr_problem {
    ok,
    not_pem,          // not exactly one PEM "CERTIFICATE REQUEST" block
    bad_signature,    // the CSR's signature does not verify with its own key
    weak_key,         // key type or size outside the policy
    explicit_ec_parameters,  // an EC key with explicit curve parameters instead of a named curve
    bad_subject,      // the subject is not exactly one CN
    cn_mismatch,      // CN != the device id of the URL (and of the token)
};
std::string_view to_string(csr_problem p) noexcept;

struct csr_result {
    csr_problem problem = csr_problem::not_pem;
    std::string detail;     // for the client and the audit line; never secret
    std::string key_type;   // "P-256", "P-384", "RSA-3072", "Ed25519"
    x509_req_ptr csr;       // set when problem == ok
};

/// Parses and checks `pem` for device `device_id` (already checked to be a safe id).
csr_result check_csr(std::string_view pem, std::string_view device_id);

/// The same checks on a parsed CSR (EST sends DER); takes ownership.
csr_result check_csr(x509_req_ptr req, std::string_view device_id);

/// The CSR's subject CN when the subject is exactly one CN; "" otherwise.
std::string csr_common_name(X509_REQ* req);

/// True for an EC key that spells out its curve (RFC 5480 2.1.1: specifiedCurve is not
/// allowed; OpenSSL's TLS refuses such a certificate with "explicit ECC parameters").
bool has_explicit_ec_parameters(EVP_PKEY* key);

/// Key policy: EC P-256/P-384 (named curve), RSA >= 2048 bits, Ed25519. Returns "" when refused.
std::string allowed_key_type(EVP_PKEY* key);

}  // namespace devicegate::bridge
