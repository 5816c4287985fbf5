#include "renewal_crls.hpp"

#include <algorithm>
#include <chrono>

namespace devicegate::bridge {

namespace {

// The plugin's crl_poll_interval default: how often CRL files are checked for changes.
constexpr std::chrono::milliseconds file_poll_interval{1000};

std::string sources_of(const crl_settings& s) {
    std::string out;
    for (const auto* list : {&s.files, &s.urls}) {
        for (const auto& name : *list) out += (out.empty() ? "" : ", ") + name;
    }
    return out;
}

crl_verdict stale_verdict(const crl_status& status) {
    if (status.crl != nullptr) {
        return {crl_refusal_kind::stale, "the " + std::string(to_string(status.crl->issuer)) + " CRL from " + status.crl->source +
                                             " is past its nextUpdate (" + std::to_string(status.crl->next_update) +
                                             ") and crl_grace"};
    }
    if (status.missing != nullptr) {
        return {crl_refusal_kind::stale, "no CRL from " + status.missing->source + " since " +
                                             std::to_string(status.missing->since) + ", longer than crl_grace"};
    }
    return {crl_refusal_kind::stale, "a CRL is stale"};
}

}  // namespace

std::string_view to_string(crl_refusal_kind why) noexcept {
    switch (why) {
        case crl_refusal_kind::none: return "none";
        case crl_refusal_kind::revoked: return "certificate_revoked";
        case crl_refusal_kind::ca_revoked: return "ca_revoked";
        case crl_refusal_kind::stale: return "crl_stale";
        case crl_refusal_kind::unavailable: return "crl_unavailable";
    }
    return "crl_unavailable";
}

crl_verdict judge_crls(const crl_set* set, const serial_key& serial, std::time_t now, const crl_settings& settings) {
    if (set == nullptr) return {crl_refusal_kind::unavailable, "no CRL has been loaded yet from " + sources_of(settings)};
    const crl_status status = set->check(serial, now, settings.grace, settings.stale);
    const auto sub_ca = std::find_if(set->crls().begin(), set->crls().end(),
                                     [](const verified_crl& c) { return c.issuer == ca_role::sub_ca; });
    switch (status.why) {
        case reason::ok: break;
        case reason::revoked_crl:
            return {crl_refusal_kind::revoked,
                    "the certificate is on the Sub-CA's CRL" + (sub_ca != set->crls().end() ? " from " + sub_ca->source : "")};
        case reason::ca_revoked: return {crl_refusal_kind::ca_revoked, "the tenant chain is revoked: " + set->chain_detail()};
        case reason::crl_stale: return stale_verdict(status);
        default: return {crl_refusal_kind::unavailable, "the CRL check failed (" + std::string(to_string(status.why)) + ")"};
    }
    if (sub_ca == set->crls().end()) {
        return {crl_refusal_kind::unavailable, "no CRL of the tenant Sub-CA has been loaded yet from " + sources_of(settings)};
    }
    return {};
}

renewal_crls::renewal_crls(const crl_settings& settings, std::shared_ptr<const tenant_trust> trust,
                           const std::string& state_dir, logger log)
    : settings_(settings) {
    // As the plugin's gate::start_crl_and_ocsp sets them up.
    crl_url_options url_opts;
    url_opts.refresh = settings.refresh;
    url_opts.timeout = settings.fetch_timeout;
    url_opts.retry = std::min<std::chrono::milliseconds>(std::chrono::seconds(30), settings.refresh);
    url_opts.state_dir = state_dir;
    watcher_ = std::make_unique<crl_watcher>(std::move(trust), settings.files, file_poll_interval, slot_, kicks_,
                                             std::move(log), settings.urls, url_opts);
    watcher_->load_initial();
    watcher_->start();
}

renewal_crls::~renewal_crls() {
    if (watcher_) watcher_->stop();
}

crl_verdict renewal_crls::check(const serial_key& serial, std::time_t now) {
    (void)kicks_.drain();
    const auto snapshot = slot_.load();
    return judge_crls(snapshot.get(), serial, now, settings_);
}

std::unique_ptr<renewal_crls> make_renewal_crls(const bridge_config& config, std::shared_ptr<const tenant_trust> trust,
                                                const logger& log) {
    if (!config.crl.any()) {
        log.warning("devicegate-bridge: no crl_file or crl_url: renewal checks this bridge's own CA index and the Redis "
                    "deny-list only, not the CRLs the brokers follow");
        return nullptr;
    }
    log.notice("devicegate-bridge: renewal checks the CRLs from " + sources_of(config.crl));
    return std::make_unique<renewal_crls>(config.crl, std::move(trust), config.state_dir, log);
}

}  // namespace devicegate::bridge
