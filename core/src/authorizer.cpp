#include "devicegate/authorizer.hpp"

#include "devicegate/log.hpp"

namespace devicegate {

authorizer::authorizer(std::shared_ptr<const plugin_config> config, std::shared_ptr<const tenant_trust> trust,
                       const snapshot_slot<crl_set>& revocations, const denylist_state* denylist,
                       const ocsp_cache* ocsp, const sha256_digest* sub_ca_fingerprint)
    : config_(std::move(config)),
      trust_(std::move(trust)),
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

decision authorizer::decide(X509* leaf, std::string_view client_id, std::time_t now) {
    decision d;
    if (leaf == nullptr) {
        d.why = reason::no_certificate;
        d.detail = "no client certificate (listener needs require_certificate true)";
        return d;
    }
    const sha256_digest fingerprint = certificate_sha256(leaf);
    d.fingerprint = fingerprint;
    const verified_certificate* cert = nullptr;
    if (auto hit = cache_.find(fingerprint); hit != cache_.end()) {
        cert = &hit->second;
        d.cache_hit = true;
    } else {
        verify_outcome outcome = trust_->verify(leaf);
        d.serial_hex = outcome.serial_hex;
        if (outcome.why != reason::ok) {
            d.why = outcome.why;
            d.detail = std::move(outcome.detail);
            return d;
        }
        if (cache_.size() >= config_->verify_cache_size) {
            cache_.clear();  // bounded; a full refill costs one cold verify per device
        }
        cert = &cache_.emplace(fingerprint, std::move(*outcome.cert)).first->second;
    }
    d.device_id = cert->device_id;
    d.serial_hex = cert->serial_hex;
    d.serial = cert->serial;

    if ((d.why = trust_->check_times(*cert, now, config_->clock_skew, d.detail)) != reason::ok) return d;

    auto snapshot = revocations_.load();
    if (!snapshot) {
        d.why = reason::internal_error;
        d.detail = "no revocation snapshot loaded";
        return d;
    }
    auto status = snapshot->check(cert->serial, now, config_->crl_grace, config_->crl_stale_policy);
    if ((d.why = status.why) != reason::ok) {
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
        return d;
    }
    if (denylist_ != nullptr) {
        auto list = denylist_->list.load();
        if (list && list->revokes(cert->device_id, cert->serial_hex)) {
            d.why = reason::revoked_denylist;
            d.detail = list->devices.find(cert->device_id) != list->devices.end() ? "device id is on the Redis deny-list"
                                                                                   : "serial is on the Redis deny-list";
            return d;
        }
        const std::int64_t stale_since = denylist_->stale_since.load();
        if (stale_since != 0 && config_->denylist_stale_policy == stale_policy::deny &&
            now - stale_since > config_->denylist_grace.count()) {
            d.why = reason::denylist_stale;
            d.detail = "Redis unreachable for " + std::to_string(now - stale_since) +
                       "s, longer than denylist_grace; the local deny-list copy may be out of date";
            return d;
        }
    }
    if (ocsp_ != nullptr && config_->ocsp != ocsp_mode::off && sub_ca_fingerprint_) {
        auto sub_ca = ocsp_->lookup(*sub_ca_fingerprint_, now);
        if (sub_ca == ocsp_status::revoked) {
            d.why = reason::ca_revoked;
            d.detail = "the ICA's OCSP responder says the tenant Sub-CA is revoked";
            return d;
        }
        if (sub_ca == ocsp_status::unknown) {
            d.why = reason::ocsp_unknown;
            d.detail = "the ICA's OCSP responder does not know the tenant Sub-CA";
            return d;
        }
        if (!sub_ca && config_->ocsp == ocsp_mode::hard) {
            d.why = reason::ocsp_pending;
            d.detail = "no OCSP answer about the tenant Sub-CA cached yet (ocsp hard)";
            return d;
        }
    }
    if (ocsp_ != nullptr && config_->ocsp != ocsp_mode::off) {
        auto answer = ocsp_->lookup(fingerprint, now);
        if (!answer) {
            d.ocsp_fetch = true;
            if (config_->ocsp == ocsp_mode::hard) {
                d.why = reason::ocsp_pending;
                d.detail = "no OCSP answer cached yet (ocsp hard); fetching it now, retry in a few seconds";
                return d;
            }
        } else if (*answer == ocsp_status::revoked) {
            d.why = reason::revoked_ocsp;
            d.detail = "the OCSP responder says revoked";
            return d;
        } else if (*answer == ocsp_status::unknown) {
            d.why = reason::ocsp_unknown;
            d.detail = "the OCSP responder does not know this certificate";
            return d;
        }
    }
    if (client_id != cert->device_id) {
        d.why = reason::client_id_mismatch;
        d.detail = "client id \"" + log_safe(client_id) + "\" is not the certificate's device id";
        return d;
    }
    d.why = reason::ok;
    return d;
}

}  // namespace devicegate
