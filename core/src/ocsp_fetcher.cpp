#include "devicegate/ocsp_fetcher.hpp"

#include <algorithm>
#include <ctime>

namespace devicegate {

ocsp_fetcher::ocsp_fetcher(options opts, std::shared_ptr<const tenant_trust> trust, ocsp_cache& cache,
                           broker_queue& queue, logger log)
    : opts_(std::move(opts)),
      trust_(std::move(trust)),
      cache_(cache),
      queue_(queue),
      log_(std::move(log)),
      loop_("dg-ocsp", [this](background_loop& loop) { run(loop); }) {
    X509* sub_ca = trust_->certificate(ca_role::sub_ca);
    sub_ca_fingerprint_ = certificate_sha256(sub_ca);
    if (opts_.sub_ca) {
        // Registered as a permanently active entry: the refresh loop fetches it at start and
        // keeps it fresh.
        cache_.begin_fetch(sub_ca_fingerprint_, sub_ca, serial_hex(X509_get0_serialNumber(sub_ca)), 0);
        cache_.end_fetch(sub_ca_fingerprint_);
        cache_.set_active(sub_ca_fingerprint_, true);
    }
}

ocsp_fetcher::~ocsp_fetcher() { stop(); }

void ocsp_fetcher::start() { loop_.start(); }

void ocsp_fetcher::stop() noexcept { loop_.stop(); }

void ocsp_fetcher::request(const sha256_digest& fingerprint, X509* leaf, const std::string& serial_hex) {
    if (!cache_.begin_fetch(fingerprint, leaf, serial_hex, std::time(nullptr))) return;
    X509_up_ref(leaf);
    {
        std::lock_guard lock(mutex_);
        pending_.emplace_back(fingerprint, x509_ptr(leaf));
    }
    loop_.wake();
}

void ocsp_fetcher::run(background_loop& loop) {
    // The refresh scan walks the whole cache under its lock: not on every wake-up.
    const auto scan_every = std::clamp<std::chrono::seconds>(opts_.refresh_ahead / 10, std::chrono::seconds(1),
                                                              std::chrono::seconds(5));
    auto next_scan = std::chrono::steady_clock::now();
    while (loop.wait_for(std::chrono::seconds(1))) {
        std::deque<std::pair<sha256_digest, x509_ptr>> work;
        {
            std::lock_guard lock(mutex_);
            work.swap(pending_);
        }
        for (auto& [fp, leaf] : work) {
            fetch(fp, leaf.get());
            cache_.end_fetch(fp);
        }
        if (std::chrono::steady_clock::now() < next_scan) continue;
        next_scan = std::chrono::steady_clock::now() + scan_every;
        refresh_due();
    }
}

void ocsp_fetcher::refresh_due() {
    // Connected devices: refresh ahead of expiry, so they are never without an answer.
    for (auto& [fp, leaf] : cache_.due_for_refresh(std::time(nullptr), opts_.refresh_ahead)) {
        if (!cache_.begin_fetch(fp, leaf.get(), "", std::time(nullptr))) continue;
        fetch(fp, leaf.get());
        cache_.end_fetch(fp);
    }
}

void ocsp_fetcher::fetch(const sha256_digest& fingerprint, X509* leaf) {
    const std::string serial = serial_hex(X509_get0_serialNumber(leaf));
    // The Sub-CA is answered for by its issuer, the ICA; devices by the Sub-CA.
    const bool is_sub_ca = X509_cmp(leaf, trust_->certificate(ca_role::sub_ca)) == 0;
    const std::string& override_url = is_sub_ca ? opts_.sub_ca_responder_override : opts_.responder_override;
    std::string url = override_url.empty() ? ocsp_responder_url(leaf) : override_url;
    std::string cause;
    try {
        if (url.empty()) throw ocsp_error("the certificate names no OCSP responder (AIA) and none is configured");
        X509* issuer = trust_->certificate(is_sub_ca ? ca_role::ica : ca_role::sub_ca);
        ocsp_query query = make_ocsp_query(leaf, issuer, opts_.nonce);
        http_get_options http;
        http.timeout = opts_.timeout;
        http.max_body_bytes = 1u << 20;
        http_response r = http_.post(url, query.der, "application/ocsp-request", http);
        if (!r) throw ocsp_error("fetch failed: " + r.error);
        if (r.status != 200) throw ocsp_error("HTTP " + std::to_string(r.status));
        x509_stack_ptr chain(sk_X509_new_null());
        if (!is_sub_ca) {
            sk_X509_push(chain.get(), trust_->certificate(ca_role::ica));
            X509_up_ref(trust_->certificate(ca_role::ica));
        }
        const std::time_t now = std::time(nullptr);
        ocsp_answer answer =
            verify_ocsp_response(r.body, query, issuer, chain.get(), trust_->store(), now, opts_.skew, opts_.max_age);
        if (auto newer = cache_.store(fingerprint, answer, now)) {
            throw ocsp_error("older than the answer held: thisUpdate " + std::to_string(answer.this_update) + " (" +
                             std::string(to_string(answer.status)) + ") < " + std::to_string(newer->this_update) +
                             " (" + std::string(to_string(newer->status)) + ")");
        }
        if (!last_failure_.empty()) {
            log_.notice("devicegate: ocsp responder " + url + " answers again");
            last_failure_.clear();
        }
        log_.info("devicegate: ocsp serial=" + serial + " status=" + std::string(to_string(answer.status)));
        if (answer.status == ocsp_status::revoked) {
            kick_request kick;
            if (is_sub_ca) {
                log_.error("devicegate: ocsp says the tenant Sub-CA serial=" + serial +
                           " is revoked; every device is refused");
                kick.everyone = true;
                kick.why = reason::ca_revoked;
            } else {
                log_.notice("devicegate: ocsp says serial=" + serial + " is revoked");
                kick.serials.push_back(make_serial_key(X509_get0_serialNumber(leaf)));
                kick.why = reason::revoked_ocsp;
            }
            queue_.push_kick(std::move(kick));
        }
        return;
    } catch (const std::exception& e) {
        cause = e.what();
    }
    ++failures_;
    cache_.store_failure(fingerprint, std::time(nullptr) + opts_.retry.count());
    if (cause != last_failure_) {
        log_.warning("devicegate: ocsp_failed serial=" + serial + " responder=" + (url.empty() ? "-" : url) +
                     " cause=\"" + log_safe(cause, 300) + "\"");
        last_failure_ = cause;
    }
}

}  // namespace devicegate
