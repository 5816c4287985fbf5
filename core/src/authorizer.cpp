#include "devicegate/authorizer.hpp"

#include "devicegate/log.hpp"

#include <limits>

namespace devicegate {

authorizer::authorizer(std::shared_ptr<const plugin_config> config, std::shared_ptr<const tenant_trust> trust,
                       const snapshot_slot<crl_set>& revocations, const denylist_state* denylist,
                       const ocsp_cache* ocsp, const sha256_digest* sub_ca_fingerprint,
                       std::shared_ptr<const tenant_trust> service_trust)
    : config_(std::move(config)),
      trust_(std::move(trust)),
      service_trust_(std::move(service_trust)),
      revocations_(revocations),
      denylist_(denylist),
      ocsp_(ocsp) {
    if (sub_ca_fingerprint != nullptr) sub_ca_fingerprint_ = *sub_ca_fingerprint;
}

decision authorizer::authorize(X509* leaf, std::string_view client_id, std::time_t now) noexcept {
    try {
        return decide(leaf, client_id, now);
    } catch (const std::exception& e) {
        decision d;
        d.why = reason::internal_error;
        d.detail = e.what();
        return d;
    } catch (...) {
        return decision{};
    }
}

namespace {

// A refusal: fills the decision and stops the chain of checks.
bool refuse(decision& d, reason why, std::string detail) {
    d.why = why;
    d.detail = std::move(detail);
    return false;
}

}  // namespace

decision authorizer::decide(X509* leaf, std::string_view client_id, std::time_t now) {
    decision d;
    if (leaf == nullptr) {
        refuse(d, reason::no_certificate, "no client certificate (listener needs require_certificate true)");
        return d;
    }
    cache_entry* entry = verified(leaf, d);
    if (entry == nullptr) return d;
    const verified_certificate* cert = &entry->cert;
    d.device_id = cert->device_id;
    if (d.cache_hit) d.serial_hex = cert->serial_hex();  // a miss set it from the certificate
    d.serial = cert->serial;
    if (config_->service_names.count(cert->device_id) > 0) d.kind = identity_kind::service;
    // The steps in order of cost and of precedence of their reason codes.
    if ((d.why = trust_->check_times(*cert, now, config_->clock_skew, d.detail)) != reason::ok) return d;
    if (!crl_allows(*entry, now, d) || !denylist_allows(*cert, now, d) || !sub_ca_ocsp_allows(now, d) ||
        !ocsp_allows(d.fingerprint, now, d)) {
        return d;
    }
    if (client_id != cert->device_id) {
        refuse(d, reason::client_id_mismatch,
               "client id \"" + log_safe(client_id) + "\" is not the certificate's device id");
        return d;
    }
    d.why = reason::ok;
    return d;
}

reason authorizer::revocation(const serial_key& serial, const std::string& device_id, const std::string& serial_hex,
                              const sha256_digest& fingerprint, std::time_t now) const noexcept {
    try {
        auto snapshot = revocations_.load();
        if (!snapshot) return reason::internal_error;
        auto status = snapshot->check(serial, now, config_->crl_grace, config_->crl_stale_policy);
        if (status.why != reason::ok) return status.why;
        if (denylist_ != nullptr) {
            auto list = denylist_->list.load();
            if (list && list->revokes(device_id, serial_hex)) return reason::revoked_denylist;
        }
        if (ocsp_ != nullptr && config_->ocsp != ocsp_mode::off && ocsp_->lookup(fingerprint, now) == ocsp_status::revoked) {
            return reason::revoked_ocsp;
        }
        return reason::ok;
    } catch (...) {
        return reason::internal_error;  // fail closed
    }
}

authorizer::cache_entry* authorizer::verified(X509* leaf, decision& d) {
    d.fingerprint = certificate_sha256(leaf);
    if (auto hit = cache_.find(d.fingerprint); hit != cache_.end()) {
        d.cache_hit = true;
        return &hit->second;
    }
    verify_outcome outcome = trust_->verify(leaf, tenant_signature_);
    if (outcome.why == reason::wrong_issuer && service_trust_) return verified_service(leaf, outcome, d);
    d.serial_hex = outcome.serial_hex;
    if (outcome.why != reason::ok) {
        refuse(d, outcome.why, std::move(outcome.detail));
        return nullptr;
    }
    if (cache_.size() >= config_->verify_cache_size) {
        cache_.clear();  // bounded; a full refill costs one cold verify per device
    }
    return &cache_.emplace(d.fingerprint, cache_entry{std::move(*outcome.cert)}).first->second;
}

authorizer::cache_entry* authorizer::verified_service(X509* leaf, verify_outcome& outcome, decision& d) {
    verify_outcome service = service_trust_->verify(leaf, service_signature_);
    if (service.why == reason::wrong_issuer) {  // neither the tenant Sub-CA nor the service CA
        d.serial_hex = outcome.serial_hex;
        refuse(d, outcome.why, std::move(outcome.detail));
        return nullptr;
    }
    d.serial_hex = service.serial_hex;
    if (service.why != reason::ok) {
        refuse(d, service.why, "service CA: " + service.detail);
        return nullptr;
    }
    if (config_->service_names.count(service.cert->device_id) == 0) {
        refuse(d, reason::wrong_issuer,
               "issued by the service CA, but \"" + log_safe(service.cert->device_id) +
                   "\" is not a configured service (plugin_opt_service)");
        return nullptr;
    }
    if (cache_.size() >= config_->verify_cache_size) cache_.clear();
    return &cache_.emplace(d.fingerprint, cache_entry{std::move(*service.cert)}).first->second;
}

bool authorizer::crl_allows(cache_entry& entry, std::time_t now, decision& d) const {
    auto snapshot = revocations_.load();
    if (!snapshot) return refuse(d, reason::internal_error, "no revocation snapshot loaded");
    auto status =
        snapshot->check(entry.cert.serial, now, config_->crl_grace, config_->crl_stale_policy, &entry.crl_clear);
    if (status.why == reason::ok) return true;
    d.why = status.why;
    if (status.why == reason::ca_revoked) d.detail = snapshot->chain_detail();
    if (status.why == reason::revoked_crl) d.detail = "serial is on the tenant Sub-CA's CRL";
    if (status.missing != nullptr) {
        d.detail = "no CRL from " + status.missing->source + " for " + std::to_string(now - status.missing->since) +
                   "s, longer than crl_grace";
    }
    if (status.crl != nullptr) {
        d.detail = "CRL " + status.crl->source + " is past nextUpdate + grace (" +
                   std::to_string(now - status.crl->next_update) + "s past nextUpdate)";
    }
    return false;
}

bool authorizer::denylist_allows(const verified_certificate& cert, std::time_t now, decision& d) const {
    if (denylist_ == nullptr) return true;
    auto list = denylist_->list.load();
    if (list && list->revokes(cert.device_id, d.serial_hex)) {
        return refuse(d, reason::revoked_denylist,
                      list->devices.find(cert.device_id) != list->devices.end() ? "device id is on the Redis deny-list"
                                                                                 : "serial is on the Redis deny-list");
    }
    // Services (monitoring, backends) are not subject to the staleness policy: monitoring
    // must stay up exactly when Redis is unreachable (issue 12, finding 6).
    if (config_->service_names.count(cert.device_id) > 0) return true;
    const std::int64_t stale_since = denylist_->stale_since.load();
    if (stale_since != 0 && config_->denylist_stale_policy == stale_policy::deny &&
        now - stale_since > config_->denylist_grace.count()) {
        return refuse(d, reason::denylist_stale,
                      "Redis unreachable for " + std::to_string(now - stale_since) +
                          "s, longer than denylist_grace; the local deny-list copy may be out of date");
    }
    return true;
}

bool authorizer::sub_ca_ocsp_allows(std::time_t now, decision& d) const {
    if (ocsp_ == nullptr || config_->ocsp == ocsp_mode::off || !sub_ca_fingerprint_) return true;
    auto sub_ca = ocsp_->lookup(*sub_ca_fingerprint_, now);
    if (sub_ca == ocsp_status::revoked) {
        return refuse(d, reason::ca_revoked, "the ICA's OCSP responder says the tenant Sub-CA is revoked");
    }
    if (sub_ca == ocsp_status::unknown) {
        return refuse(d, reason::ocsp_unknown, "the ICA's OCSP responder does not know the tenant Sub-CA");
    }
    if (!sub_ca && config_->ocsp == ocsp_mode::hard) {
        return refuse(d, reason::ocsp_pending, "no OCSP answer about the tenant Sub-CA cached yet (ocsp hard)");
    }
    return true;
}

bool authorizer::ocsp_allows(const sha256_digest& fingerprint, std::time_t now, decision& d) const {
    if (ocsp_ == nullptr || config_->ocsp == ocsp_mode::off) return true;
    auto answer = ocsp_->lookup(fingerprint, now);
    if (!answer) {
        d.ocsp_fetch = true;
        if (config_->ocsp == ocsp_mode::hard) {
            return refuse(d, reason::ocsp_pending,
                          "no OCSP answer cached yet (ocsp hard); fetching it now, retry in a few seconds");
        }
    } else if (*answer == ocsp_status::revoked) {
        return refuse(d, reason::revoked_ocsp, "the OCSP responder says revoked");
    } else if (*answer == ocsp_status::unknown) {
        return refuse(d, reason::ocsp_unknown, "the OCSP responder does not know this certificate");
    }
    return true;
}

namespace {
/// cache_entry::job_generation's value for the job producer's `generation`: 1 + it, or 0
/// (never memoized) when that does not fit in 32 bits.
std::uint32_t job_mark(std::uint64_t generation) {
    return generation < std::numeric_limits<std::uint32_t>::max() ? static_cast<std::uint32_t>(generation + 1) : 0;
}
}  // namespace

bool authorizer::job_handed_over(const sha256_digest& fingerprint, std::uint64_t generation) const {
    const std::uint32_t mark = job_mark(generation);
    auto it = cache_.find(fingerprint);
    return mark != 0 && it != cache_.end() && it->second.job_generation == mark;
}

void authorizer::note_job_handed_over(const sha256_digest& fingerprint, std::uint64_t generation) {
    if (auto it = cache_.find(fingerprint); it != cache_.end()) it->second.job_generation = job_mark(generation);
}

}  // namespace devicegate
