#pragma once
// The CRLs that renewal checks, loaded and refreshed the way the plugin does (crl_watcher: the
// same files, URLs, verification against the tenant chain, rollback refusal and staleness
// rule), so that the bridge never renews a certificate that a broker following the same CRLs
// refuses. The embedded CA's own index and the Redis deny-list are checked besides (service).
#include "bridge_config.hpp"

#include "devicegate/broker_queue.hpp"
#include "devicegate/crl_set.hpp"
#include "devicegate/crl_watcher.hpp"
#include "devicegate/log.hpp"
#include "devicegate/snapshot_slot.hpp"

#include <ctime>
#include <memory>
#include <string>

namespace devicegate::bridge {

/// Why the CRLs refuse a renewal.
enum class crl_refusal_kind { none, revoked, ca_revoked, stale, unavailable };

struct crl_verdict {
    crl_refusal_kind why = crl_refusal_kind::none;
    std::string detail;  // names the CRL source and the cause; never secret
};

/// The decision on one snapshot, apart from the watcher (unit-tested): crl_set::check with the
/// plugin's crl_grace and crl_stale_policy, and, stricter than the plugin, no renewal at all
/// while no CRL of the Sub-CA is in force (a CRL URL that never answered): the plugin admits
/// then during crl_grace so that a CA outage does not stop the fleet, but a renewal can wait.
crl_verdict judge_crls(const crl_set* set, const serial_key& serial, std::time_t now, const crl_settings& settings);

class renewal_crls {
public:
    /// Loads the files (throws pki_error naming a bad one, as the plugin refuses to start),
    /// fetches the URLs once (a failure is logged; renewal is refused until one answers) and
    /// starts the watcher thread. `state_dir` "" = the newest CRL per CA is not persisted.
    renewal_crls(const crl_settings& settings, std::shared_ptr<const tenant_trust> trust, const std::string& state_dir,
                 logger log);
    ~renewal_crls();
    renewal_crls(const renewal_crls&) = delete;
    renewal_crls& operator=(const renewal_crls&) = delete;

    /// Thread-safe, no I/O.
    crl_verdict check(const serial_key& serial, std::time_t now);

private:
    crl_settings settings_;
    snapshot_slot<crl_set> slot_;
    // The watcher asks for the sessions of newly revoked devices to be kicked: the bridge holds
    // none, so the requests are dropped at each check (a few bytes per newly revoked serial).
    broker_queue kicks_;
    std::unique_ptr<crl_watcher> watcher_;  // last: stopped before the slot and queue go away
};

/// nullptr when `config` names no CRL (the embedded signer without crl_file or crl_url: its
/// own index is then the only CA record renewal checks; logged at start).
std::unique_ptr<renewal_crls> make_renewal_crls(const bridge_config& config, std::shared_ptr<const tenant_trust> trust,
                                                const logger& log);

std::string_view to_string(crl_refusal_kind why) noexcept;

}  // namespace devicegate::bridge
