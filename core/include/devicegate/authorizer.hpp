#pragma once
// The connect decision: one call per CONNECT on the broker thread. Pure computation over
// the immutable config, the tenant chain and the current revocation snapshot; the only
// mutable state is a bounded cache of verified certificates (broker thread only), so a
// reconnecting device skips the signature checks (~3 ECDSA verifies) and pays a hash and
// a few lookups.
#include "devicegate/config.hpp"
#include "devicegate/denylist.hpp"
#include "devicegate/ocsp.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/session_registry.hpp"
#include "devicegate/crl_set.hpp"
#include "devicegate/tenant_trust.hpp"

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace devicegate {

struct decision {
    reason why = reason::internal_error;
    std::string device_id;       // the certificate's device id, when it could be read
    std::string serial_hex = "-";
    serial_key serial;
    sha256_digest fingerprint{}; // of the leaf DER, when a certificate was presented
    std::string detail;          // human-readable cause for the log line
    bool cache_hit = false;
    bool ocsp_fetch = false;     // no OCSP answer cached: the caller should start a fetch
    identity_kind kind = identity_kind::device;  // service: a configured service identity
};

class authorizer {
public:
    /// `denylist` may be null (Redis not configured).
    authorizer(std::shared_ptr<const plugin_config> config, std::shared_ptr<const tenant_trust> trust,
               const snapshot_slot<crl_set>& revocations, const denylist_state* denylist = nullptr,
               const ocsp_cache* ocsp = nullptr, const sha256_digest* sub_ca_fingerprint = nullptr,
               std::shared_ptr<const tenant_trust> service_trust = nullptr);

    /// `leaf` may be null (no client certificate). Never throws.
    decision authorize(X509* leaf, std::string_view client_id, std::time_t now) noexcept;

    /// Whether an admitted certificate is still not revoked (CRL, deny-list entry, cached
    /// OCSP answer): asked for offline sessions, whose ACL checks (will, queued messages)
    /// come without a certificate. ok, or the revocation reason. The deny-list staleness
    /// policy does not apply here: it governs new connections.
    reason revocation(const serial_key& serial, const std::string& device_id, const std::string& serial_hex,
                      const sha256_digest& fingerprint, std::time_t now) const noexcept;

    std::size_t cache_size() const noexcept { return cache_.size(); }

    /// Whether the certificate was handed to the job producer during its `generation`. Kept in
    /// the certificate's verify-cache entry (issue 13: no set of its own per device); a cache
    /// emptied when full forgets it, and the device's next connect costs one more candidate,
    /// which Redis answers as already known.
    bool job_handed_over(const sha256_digest& fingerprint, std::uint64_t generation) const;
    void note_job_handed_over(const sha256_digest& fingerprint, std::uint64_t generation);

    /// Broker thread: whether the leaf's signature is left to mosquitto's TLS handshake for
    /// the tenant Sub-CA and for the service CA (each proven by a handshake_pin).
    void set_leaf_signatures(leaf_signature tenant, leaf_signature service) noexcept {
        tenant_signature_ = tenant;
        service_signature_ = service;
    }

private:
    decision decide(X509* leaf, std::string_view client_id, std::time_t now);
    struct cache_entry {
        verified_certificate cert;
        // 32 bits each, so that the entry stays in the same malloc size class (10,000
        // devices: 160 KB); a value that does not fit is not memoized.
        std::uint32_t job_generation = 0;  // 1 + the job producer's generation it was handed over in
        std::uint32_t crl_clear = 0;       // crl_set::check's memo for cert.serial
    };
    // The steps of decide(): each refuses by filling `d` and returning false (nullptr).
    cache_entry* verified(X509* leaf, decision& d);  // the chain, or the cache
    bool crl_allows(cache_entry& entry, std::time_t now, decision& d) const;
    bool denylist_allows(const verified_certificate& cert, std::time_t now, decision& d) const;
    /// Only when the certificate was issued by the service CA: it must name a configured service.
    cache_entry* verified_service(X509* leaf, verify_outcome& outcome, decision& d);
    bool sub_ca_ocsp_allows(std::time_t now, decision& d) const;
    bool ocsp_allows(const sha256_digest& fingerprint, std::time_t now, decision& d) const;

    std::shared_ptr<const plugin_config> config_;
    std::shared_ptr<const tenant_trust> trust_;
    std::shared_ptr<const tenant_trust> service_trust_;  // plugin_opt_service_ca_file, or null
    const snapshot_slot<crl_set>& revocations_;
    const denylist_state* denylist_;
    const ocsp_cache* ocsp_;
    std::optional<sha256_digest> sub_ca_fingerprint_;  // set with ocsp_sub_ca
    std::unordered_map<sha256_digest, cache_entry, sha256_hash> cache_;
    leaf_signature tenant_signature_ = leaf_signature::verify;
    leaf_signature service_signature_ = leaf_signature::verify;
};

}  // namespace devicegate
