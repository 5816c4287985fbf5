#pragma once
// The embedded CA: the tenant Sub-CA's key and certificate on disk, an append-only index of
// issued and revoked serials in the state directory (replayed at start, so it survives
// restarts), and the CRL it publishes itself (regenerated on every revocation, and again
// when half of its validity has passed).
#include "signer.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace devicegate::bridge {

struct certificate_profile {
    std::chrono::seconds validity{std::chrono::hours(24 * 30)};
    std::chrono::seconds backdate{60};  // as step-ca: notBefore one minute in the past
};

/// The CA certificate cannot sign now: expired, not yet valid, or too close to its notAfter
/// (a device certificate is clamped to it). Answered 503: the operator must replace the CA.
struct ca_validity_error : signer_error {
    using signer_error::signer_error;
};
/// The least validity the CA must have left to issue: a certificate clamped to less is useless.
inline constexpr std::chrono::seconds min_ca_validity_left{3600};
/// What the CA must have left to issue certificates of `cert_validity`: the minimum, or less
/// when the certificates are shorter-lived than that.
inline std::chrono::seconds required_ca_validity_left(std::chrono::milliseconds cert_validity) {
    return std::min(std::chrono::duration_cast<std::chrono::seconds>(cert_validity), min_ca_validity_left);
}
/// Throws ca_validity_error naming `file` and the date when `ca` is not valid at `now` or has
/// less than `min_left` of validity left.
void check_ca_validity(X509* ca, const std::string& file, std::time_t now, std::chrono::seconds min_left);
/// The CRLNumber of the CRL stored at `path` (0 when there is no file, or it carries none).
/// Throws signer_error naming the file when it exists but is not one readable CRL.
long stored_crl_number(const std::string& path);

/// Builds and signs a device certificate with the server's profile (shared with the tests
/// and the fake step-ca). `serial` must be positive.
x509_ptr make_device_certificate(X509_REQ* csr, const std::string& device_id, X509* issuer, EVP_PKEY* issuer_key,
                                 const ASN1_INTEGER* serial, const certificate_profile& profile);
/// 16 random bytes, top bit clear (positive), never zero.
std::unique_ptr<ASN1_INTEGER, c_deleter<ASN1_INTEGER_free>> random_serial();
std::string to_pem(X509* cert);
evp_pkey_ptr read_private_key(const std::string& path);

class embedded_ca final : public signer {
public:
    struct options {
        std::string ca_cert_file;
        std::string ca_key_file;
        std::string state_dir;
        certificate_profile profile;
        std::chrono::seconds crl_validity{std::chrono::hours(24)};
    };
    /// Loads the key (which must match the certificate, which must be valid now) and replays
    /// the index; writes the CRL, numbered after the stored one. Throws signer_error naming
    /// the file and the cause.
    explicit embedded_ca(options opts);

    /// Throws ca_validity_error when the CA has expired meanwhile or has too little left.
    issued_certificate issue(X509_REQ* csr, const std::string& device_id) override;
    void revoke(const std::string& serial_hex, int reason_code) override;
    std::string crl_der() const override;
    bool is_revoked(const std::string& serial_hex) const override;

    std::size_t issued_count() const;

private:
    struct entry {
        std::string device_id;
        std::time_t not_after = 0;
        std::time_t revoked_at = 0;  // 0 = not revoked
        int reason = 0;
    };
    void replay_index();
    void append_index(const std::string& line);
    void write_crl_locked() const;

    options opts_;
    x509_ptr cert_;
    evp_pkey_ptr key_;
    std::string index_path_, crl_path_;
    mutable std::mutex mutex_;
    std::map<std::string, entry> serials_;  // upper-case hex -> entry
    mutable std::string crl_der_;
    mutable std::time_t crl_this_update_ = 0;
    mutable long crl_number_ = 0;
};

}  // namespace devicegate::bridge
