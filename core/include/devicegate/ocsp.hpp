#pragma once
// OCSP for device certificates: building requests, verifying responses (signed by the
// issuer or by a delegated responder carrying id-kp-OCSPSigning issued by it, for exactly the
// certificate asked about, fresh by thisUpdate/nextUpdate within a clock skew, nonce checked),
// and the cache the broker thread reads. No network here: the fetcher does that.
#include "devicegate/ossl.hpp"
#include "devicegate/pki.hpp"

#include <openssl/ocsp.h>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace devicegate {

using ocsp_request_ptr = std::unique_ptr<OCSP_REQUEST, c_deleter<OCSP_REQUEST_free>>;
using ocsp_response_ptr = std::unique_ptr<OCSP_RESPONSE, c_deleter<OCSP_RESPONSE_free>>;
using ocsp_basic_ptr = std::unique_ptr<OCSP_BASICRESP, c_deleter<OCSP_BASICRESP_free>>;
using ocsp_certid_ptr = std::unique_ptr<OCSP_CERTID, c_deleter<OCSP_CERTID_free>>;

/// A response that cannot be trusted or used; the message names the cause.
struct ocsp_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class ocsp_status { good, revoked, unknown };
std::string_view to_string(ocsp_status s) noexcept;

struct ocsp_answer {
    ocsp_status status = ocsp_status::unknown;
    std::time_t this_update = 0;
    std::time_t next_update = 0;  // 0: the responder gave none
};

/// One request for `leaf` issued by `issuer`: its DER and the certificate id to look for.
struct ocsp_query {
    std::string der;
    ocsp_request_ptr request;  // kept for the nonce check
    ocsp_certid_ptr id;
};
ocsp_query make_ocsp_query(X509* leaf, X509* issuer, bool nonce);

/// Verifies a DER response to `query`. `issuer` is the leaf's issuer (the tenant Sub-CA);
/// `chain` the certificates above it; `store` trusts the Root. An answer without nextUpdate
/// is refused once its thisUpdate is older than `max_age` (ocsp_max_ttl) plus `skew`.
/// Throws ocsp_error.
ocsp_answer verify_ocsp_response(std::string_view der, const ocsp_query& query, X509* issuer,
                                 STACK_OF(X509) * chain, X509_STORE* store, std::time_t now,
                                 std::chrono::seconds skew, std::chrono::seconds max_age);

/// The responder URL from the certificate's Authority Information Access, or "".
std::string ocsp_responder_url(X509* cert);

/// What the broker thread knows per certificate (by SHA-256 of its DER). Thread-safe; every
/// operation holds the mutex only for a hash-map access (never during I/O).
class ocsp_cache {
public:
    struct entry {
        std::optional<ocsp_answer> answer;  // nullopt: no usable answer yet (fetch failed)
        std::time_t expires = 0;            // unix time after which the answer is not used
        std::time_t retry_after = 0;        // for failed fetches: not before
        bool active = false;                // a session holds this certificate: refresh it
        x509_ptr leaf;                      // for refreshes
        std::string serial_hex;
    };

    explicit ocsp_cache(std::size_t max_entries, std::chrono::seconds max_ttl)
        : max_entries_(max_entries), max_ttl_(max_ttl) {}

    /// The answer in force for `fingerprint` at `now`, if any.
    std::optional<ocsp_status> lookup(const sha256_digest& fingerprint, std::time_t now) const;
    /// Takes `answer` for `fingerprint`, unless its thisUpdate is older than the answer held:
    /// then returns that newer answer, which stays.
    std::optional<ocsp_answer> store(const sha256_digest& fingerprint, const ocsp_answer& answer, std::time_t now);
    void store_failure(const sha256_digest& fingerprint, std::time_t retry_after);
    /// Registers the certificate (for refreshes); returns false if a fetch for it should not
    /// start now (one is under way or failed recently).
    bool begin_fetch(const sha256_digest& fingerprint, X509* leaf, const std::string& serial_hex, std::time_t now);
    void end_fetch(const sha256_digest& fingerprint);
    /// A session holds (leaf given) or released this certificate. Released entries drop their
    /// certificate: only connected devices' answers are refreshed, and a disconnected
    /// device's certificate should not stay in memory.
    void set_active(const sha256_digest& fingerprint, bool active, X509* leaf = nullptr);
    /// Certificates of connected devices whose answer expires within `ahead`.
    std::vector<std::pair<sha256_digest, x509_ptr>> due_for_refresh(std::time_t now, std::chrono::seconds ahead);
    std::size_t size() const;

private:
    void evict_locked(std::time_t now);

    std::size_t max_entries_;
    std::chrono::seconds max_ttl_;
    mutable std::mutex mutex_;
    std::unordered_map<sha256_digest, entry, sha256_hash> entries_;
    std::unordered_map<sha256_digest, bool, sha256_hash> in_flight_;
};

}  // namespace devicegate
