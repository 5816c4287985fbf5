#pragma once
// The one interface behind which a certificate is issued and revoked: the embedded CA
// (embedded_ca.hpp) or step-ca (stepca_signer.hpp). Callers have checked the CSR
// (csr_check.hpp); the signer applies the server's profile: subject CN = device id, SAN
// DNS = device id, extendedKeyUsage clientAuth, the configured validity. Whatever
// extensions the CSR requests are ignored.
#include "csr_check.hpp"

#include <chrono>
#include <ctime>
#include <stdexcept>
#include <string>

namespace devicegate::bridge {

struct issued_certificate {
    std::string certificate_pem;
    std::string serial_hex;   // upper-case, as the plugin logs it
    std::time_t not_after = 0;
};

/// The CA could not do it (unreachable, refused); what() names the cause, never a secret.
struct signer_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// The certificate is unknown to the CA, or already revoked: `already_revoked` when the CA says
/// so (step-ca); the embedded CA's callers ask is_revoked() first.
struct signer_not_found : signer_error {
    explicit signer_not_found(const std::string& what, bool already = false) : signer_error(what), already_revoked(already) {}
    bool already_revoked = false;
};

class signer {
public:
    virtual ~signer() = default;
    /// Thread-safe. Throws signer_error.
    virtual issued_certificate issue(X509_REQ* csr, const std::string& device_id) = 0;
    /// Thread-safe. `reason_code` is an RFC 5280 CRLReason. Throws signer_error / signer_not_found.
    virtual void revoke(const std::string& serial_hex, int reason_code) = 0;
    /// The CRL (DER) when this signer publishes one itself; "" otherwise.
    virtual std::string crl_der() const = 0;
    /// True when the CA knows `serial_hex` as revoked (step-ca: false; the Redis deny-list decides).
    virtual bool is_revoked(const std::string& serial_hex) const = 0;
};

}  // namespace devicegate::bridge
