#pragma once
// Revocation state per issuing CA (tenant Sub-CA, ICA, Root), not per source: for each CA the
// newest genuine CRL seen from any source is in force. A source can add a newer CRL of a CA;
// it can never remove one by delivering another CA's CRL, an older CRL of the same CA
// (rollback) or one dated in the future. The newest CRL of each CA is persisted in state_dir
// (devicegate-crl-<ca>.der), so a broker restarted with an older CRL keeps the newer one in
// force and refuses the older one. A CA whose CRL no source delivers any more becomes stale
// from then on (crl_grace, then crl_stale_policy), never empty.
#include "devicegate/crl_set.hpp"
#include "devicegate/tenant_trust.hpp"

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate {

/// Why a genuine CRL (issuer and signature verified) is not taken into force. other_partition:
/// its issuingDistributionPoint names a distribution point other than the CRL in force's (or
/// that one has none): a partition of the CA's revocations, not a newer complete CRL.
enum class crl_refusal { none, invalid, future_dated, rollback, other_partition };
std::string_view to_string(crl_refusal r) noexcept;

/// Orders CRLs of one CA: the CRL number (RFC 5280 section 5.2.3) when both carry one, and
/// thisUpdate. Newer means: number not lower and thisUpdate not earlier.
struct crl_version {
    std::string number;  // upper-case hex without leading zeros; "" = the CRL has none
    std::time_t this_update = 0;
};
crl_version version_of(X509_CRL* crl);
/// True when `fresh` is older than `in_force` by CRL number or by thisUpdate.
bool is_rollback(const crl_version& fresh, const crl_version& in_force);
std::string describe(const crl_version& v);

struct crl_offer_result {
    crl_refusal refusal = crl_refusal::none;
    ca_role issuer = ca_role::sub_ca;
    bool changed = false;        // a different CRL is now in force for `issuer`
    std::string detail;          // refusals: what was compared
    std::string persist_error;   // taken into force, but not written to state_dir
};

class crl_state {
public:
    struct options {
        std::string state_dir;                // "" = nothing persisted
        std::chrono::seconds clock_skew{60};  // thisUpdate may be this far in the future
    };
    crl_state(std::shared_ptr<const tenant_trust> trust, options opts);

    /// Start-up: takes the CRLs persisted by an earlier run into force, stale from `now` until
    /// a source delivers them again. Returns a line per CRL loaded. Throws pki_error naming
    /// the file when one exists but cannot be read or verified (delete it to start afresh).
    std::vector<std::string> load_persisted(std::time_t now);

    /// Verifies `crl` against the configured CAs (throws pki_error for an unknown issuer, a bad
    /// signature, a delta CRL, a CRL not complete for the certificates checked: verify_crl),
    /// then refuses it if future-dated, for another distribution point, or older than the CRL
    /// in force (a refused CRL changes nothing, neither the CRL in force nor state_dir);
    /// otherwise takes it into force and persists it. `der`, when given, is the CRL exactly as
    /// received (one DER CRL): written as is, without re-encoding a copy of a large CRL.
    crl_offer_result offer(X509_CRL* crl, const std::string& source, std::time_t now, std::string_view der = {});

    /// The CAs whose CRLs `source` delivers now (taken into force or identical to the one in
    /// force). A CA in force that no source delivers any more is stale from `now` on.
    /// Returns true if that changed which CAs are stale (a new snapshot is due).
    bool set_delivered(const std::string& source, const std::vector<ca_role>& issuers, std::time_t now);

    std::vector<verified_crl> in_force() const;
    /// The CRL in force for `role`, or nullptr.
    const verified_crl* current(ca_role role) const noexcept { return slots_[index(role)].crl ? &*slots_[index(role)].crl : nullptr; }
    /// CAs in force that no source delivers, with the time since when (for crl_grace).
    std::vector<missing_crl_source> undelivered() const;
    std::string persisted_file(ca_role role) const;

private:
    struct slot {
        std::optional<verified_crl> crl;
        crl_version version;
        std::int64_t undelivered_since = 0;  // 0: some source delivers it
    };
    std::string persist(ca_role role, X509_CRL* crl, std::string_view der) const;
    static std::size_t index(ca_role role) noexcept { return static_cast<std::size_t>(role); }

    std::shared_ptr<const tenant_trust> trust_;
    options opts_;
    std::array<slot, 3> slots_;
    std::map<std::string, std::vector<ca_role>> delivered_;  // by source
};

}  // namespace devicegate
