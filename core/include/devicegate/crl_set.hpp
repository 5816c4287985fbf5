#pragma once
// CRLs verified against the tenant chain, merged into an immutable crl_set that the broker
// thread reads lock-free (through a snapshot_slot); the crl_watcher thread builds new ones
// and swaps them in.
#include "devicegate/config.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/snapshot_slot.hpp"
#include "devicegate/tenant_trust.hpp"

#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

namespace devicegate {

/// A CRL's sorted serials, shared between the CRL state (the CRL in force) and every
/// snapshot built from it: one array per CRL in memory, not two (2.1 MB per 100,000 serials,
/// issue 13). Immutable once made.
class shared_serials {
public:
    shared_serials() = default;
    shared_serials(std::vector<serial_key> sorted)  // NOLINT: implicit, a verified_crl is built from a vector
        : serials_(std::make_shared<const std::vector<serial_key>>(std::move(sorted))) {}
    const std::vector<serial_key>& get() const noexcept { return serials_ ? *serials_ : none(); }
    std::size_t size() const noexcept { return get().size(); }
    bool empty() const noexcept { return get().empty(); }
    auto begin() const noexcept { return get().begin(); }
    auto end() const noexcept { return get().end(); }
    friend bool operator==(const shared_serials& a, const shared_serials& b) {
        return a.serials_ == b.serials_ || a.get() == b.get();
    }
    friend bool operator==(const shared_serials& a, const std::vector<serial_key>& b) { return a.get() == b; }

private:
    static const std::vector<serial_key>& none() noexcept {
        static const std::vector<serial_key> empty;
        return empty;
    }
    std::shared_ptr<const std::vector<serial_key>> serials_;
};

/// One CRL whose signature verified against one of the configured CAs, reduced to what
/// the decision needs (the X509_CRL itself, ~200 bytes an entry, is not kept).
struct verified_crl {
    std::string source;                  // file path or URL, for log lines
    ca_role issuer = ca_role::sub_ca;
    std::time_t this_update = 0;
    std::time_t next_update = 0;         // 0: the CRL has no nextUpdate
    std::string distribution_point;      // its issuingDistributionPoint's name; "" = none (all certificates)
    shared_serials revoked;              // sorted, unique
};

/// Verifies `crl` against the configured CAs (issuer name and signature) and extracts its
/// entries. Throws pki_error naming `source` and the cause (unknown issuer, bad signature,
/// delta CRL, unreadable times), and for a CRL that is not complete for the certificates
/// checked against it (RFC 5280 sections 5.2, 5.3): an issuingDistributionPoint limiting it to
/// other certificates (onlyContainsCACerts on the Sub-CA's CRL, onlyContainsUserCerts on the
/// ICA's or Root's, onlyContainsAttributeCerts), to some reasons (onlySomeReasons), or
/// indirectCRL; a critical extension or critical entry extension it does not process; an
/// entry's certificateIssuer (indirect).
verified_crl verify_crl(X509_CRL* crl, const tenant_trust& trust, const std::string& source);

/// Reads, parses and verifies every CRL in one file (PEM may hold several).
std::vector<verified_crl> load_crl_file(const std::string& path, const tenant_trust& trust);

/// A CRL source (URL) that has not delivered a good CRL yet.
struct missing_crl_source {
    std::string source;
    std::int64_t since = 0;  // unix time
};

struct crl_status {
    reason why = reason::ok;
    const verified_crl* crl = nullptr;               // the stale CRL, for crl_stale
    const missing_crl_source* missing = nullptr;     // or the source without any CRL
};

class crl_set {
public:
    crl_set() = default;
    // Immutable, and identified by instance(): a copy would share the id (harmless), a move
    // would leave the id with an emptied array (a memo written against it would skip the
    // search in the moved-to set). Held through shared_ptr<const crl_set> only.
    crl_set(const crl_set&) = delete;
    crl_set& operator=(const crl_set&) = delete;
    /// Merges the CRLs: leaf serials from Sub-CA CRLs; a Sub-CA on an ICA CRL, or an ICA on a
    /// Root CRL, revokes the whole tenant chain.
    crl_set(std::vector<verified_crl> crls, const tenant_trust& trust, std::uint64_t generation,
                        std::vector<missing_crl_source> missing = {});

    /// revoked_crl, ca_revoked, crl_stale (past nextUpdate + grace, or a source without any
    /// CRL for longer than grace, with policy deny) or ok.
    /// `clear`, for a caller that checks the same serial again (the verify cache): the
    /// instance() in which the serial was last found on none of the leaf CRLs, or 0. When it
    /// names this set the search is skipped (this set is immutable); after a search that
    /// finds nothing it is set to this set's instance().
    crl_status check(const serial_key& leaf, std::time_t now, std::chrono::seconds grace, stale_policy policy,
                     std::uint32_t* clear = nullptr) const;

    bool chain_revoked() const noexcept { return chain_revoked_; }
    const std::string& chain_detail() const noexcept { return chain_detail_; }
    const std::vector<serial_key>& revoked_leaves() const noexcept { return revoked_leaves_.get(); }
    const std::vector<verified_crl>& crls() const noexcept { return crls_; }
    std::uint64_t generation() const noexcept { return generation_; }
    /// Unique among the sets this process made (generation() is the watcher's count, and
    /// tests reuse it); 0 once 2^32 - 1 sets were made, which check() never memoizes.
    std::uint32_t instance() const noexcept { return instance_; }

private:
    shared_serials revoked_leaves_;   // the Sub-CA CRL's own array when there is one Sub-CA CRL
    std::vector<verified_crl> crls_;
    std::vector<missing_crl_source> missing_;
    bool chain_revoked_ = false;
    std::string chain_detail_;
    std::uint64_t generation_ = 0;
    std::uint32_t instance_ = next_instance();

    static std::uint32_t next_instance() noexcept;
};

/// Serials revoked in `next` but not in `prev` (both sorted): the devices to disconnect.
std::vector<serial_key> newly_revoked(const std::vector<serial_key>& prev, const std::vector<serial_key>& next);

}  // namespace devicegate
