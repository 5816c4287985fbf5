#pragma once
// The tenant's fixed chain (Sub-CA -> ICA -> Root), loaded and verified once, and the
// cold-path check of one device certificate against it: the constant part of the chain
// (Sub-CA by ICA by Root, CA constraints, path lengths) is verified at load; per device
// only the leaf is checked (its signature with the pinned Sub-CA's key, extensions, name
// constraints, identity). docs/PERFORMANCE-notes.md argues why this equals X509_verify_cert
// for this fixed chain.
#include "devicegate/pki.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/serial_spelling.hpp"

#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace devicegate {

enum class ca_role { sub_ca, ica, root };
std::string_view to_string(ca_role role) noexcept;

/// What a device certificate proves once its chain has been verified. Times are kept so
/// that cached results are re-checked against the clock on every connect.
struct verified_certificate {
    std::string device_id;
    serial_key serial;
    serial_spelling serial_text;  // the hex is derived from `serial` (one heap string less per cached device)
    std::time_t not_before = 0;
    std::time_t not_after = 0;

    /// serial_hex() of the certificate's serial.
    std::string serial_hex() const { return serial_text.hex(serial); }
};

struct verify_outcome {
    reason why = reason::internal_error;
    std::string detail;                         // for the log line; never secret
    std::string serial_hex = "-";               // known as soon as the certificate parses
    std::optional<verified_certificate> cert;   // set when why == ok
};

/// Whether verify() checks the leaf's signature with the Sub-CA's key itself, or relies on a
/// TLS handshake that is proven to have done it (handshake_pin.hpp).
enum class leaf_signature { verify, verified_by_handshake };

class tenant_trust {
public:
    /// Loads and cross-checks the three CA files (each must hold exactly one certificate;
    /// Sub-CA issued by ICA, ICA by Root, Root self-signed, all CAs). Throws pki_error.
    static std::shared_ptr<const tenant_trust> load(const std::string& sub_ca_file, const std::string& ica_file,
                                                    const std::string& root_file);

    /// Full check of a leaf against the pinned chain: issuer pinning (name, key id, the
    /// Sub-CA's keyUsage), end-entity, EKU, unhandled critical extensions, proxy, key,
    /// signature with the Sub-CA's public key, the CAs' name constraints, device id.
    /// Validity times are checked by check_times() so that a cached result is re-checked;
    /// this call does not look at the clock. With leaf_signature::verified_by_handshake the
    /// signature step is skipped: only for a leaf that mosquitto's TLS handshake verified on a
    /// listener a handshake_pin proved for this Sub-CA.
    verify_outcome verify(X509* leaf, leaf_signature signature = leaf_signature::verify) const;

    /// The same decision made by X509_verify_cert over leaf -> Sub-CA -> ICA -> Root (all
    /// three signatures, chain building, pinning). Used by verify() for chains or leaves
    /// with RFC 3779 resources, and by the tests as the reference.
    verify_outcome verify_full(X509* leaf) const;

    /// Leaf validity with skew, and the configured CAs' own validity.
    reason check_times(const verified_certificate& cert, std::time_t now, std::chrono::seconds skew,
                       std::string& detail) const;

    X509* certificate(ca_role role) const noexcept;
    /// Trusts the Root only; for verifying OCSP responders' chains.
    X509_STORE* store() const noexcept { return store_.get(); }
    const serial_key& serial(ca_role role) const noexcept;

private:
    using name_constraints_ptr = std::unique_ptr<NAME_CONSTRAINTS, c_deleter<NAME_CONSTRAINTS_free>>;
    tenant_trust() = default;
    void check_constant_chain(const std::string& sub_ca_file, const std::string& ica_file,
                              const std::string& root_file);
    reason check_pinning(X509* leaf, std::string& detail) const;
    reason check_leaf(X509* leaf, leaf_signature signature, std::string& detail) const;
    reason check_chain_full(X509* leaf, std::string& detail) const;
    void finish(X509* leaf, verify_outcome& out) const;
    x509_ptr sub_ca_, ica_, root_;
    serial_key serial_[3];
    x509_store_ptr store_;
    x509_stack_ptr untrusted_;
    EVP_PKEY* sub_ca_key_ = nullptr;                    // owned by sub_ca_
    std::vector<name_constraints_ptr> constraints_;     // of Root, ICA, Sub-CA (those that have them)
    bool chain_has_resources_ = false;                  // RFC 3779 extensions in a CA: verify_full()
    std::time_t chain_not_before_ = 0;  // the latest notBefore of the three CAs
    std::time_t chain_not_after_ = 0;   // the earliest notAfter of the three CAs
};

/// The device id of a leaf: its single subject CN, which must be a safe id, and which every
/// DNS SAN (if any) must repeat. Returns reason::ok or reason::bad_device_id.
reason extract_device_id(X509* leaf, std::string& device_id, std::string& detail);

/// reason::ok when the leaf has no extendedKeyUsage or one that includes clientAuth.
reason check_client_auth_eku(X509* leaf, std::string& detail);

}  // namespace devicegate
