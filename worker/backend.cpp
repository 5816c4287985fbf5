#include "backend.hpp"

#include "devicegate/log.hpp"

#include <algorithm>

namespace devicegate::worker {

std::string excerpt(const std::string& body) { return log_safe(body, 300); }

void fail(target t, const http_response& r, std::string_view call, worker_metrics& metrics) {
    const std::string where = std::string(to_string(t)) + ": " + std::string(call) + ": ";
    if (!r) {
        metrics.error(t, error_kind::transport);
        throw target_failure(t, true, 0, "", where + "transport error: " + r.error);
    }
    const long s = r.status;
    error_kind kind = s == 429 ? error_kind::http_429
                      : s >= 500 ? error_kind::http_5xx
                      : (s == 401 || s == 403) ? error_kind::auth
                                                : error_kind::http_4xx;
    metrics.error(t, kind);
    const bool retry = s == 408 || s == 429 || s >= 500;
    std::string body = excerpt(r.body);
    throw target_failure(t, retry, s, body, where + "HTTP " + std::to_string(s) + (body.empty() ? "" : " " + body));
}

login_gate::login_gate(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                       worker_metrics& metrics, std::function<void(bool, const std::string&)> on_change)
    : which_(which), initial_(initial), max_(max), interval_(initial), metrics_(metrics), on_change_(std::move(on_change)) {}

void login_gate::before_login() {
    std::lock_guard lock(mutex_);
    if (!paused_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_try_) throw_paused();
    next_try_ = now + interval_;  // this caller is the probe; everyone else waits for its answer
}

void login_gate::refused(const std::string& why) {
    bool changed = false;
    {
        std::lock_guard lock(mutex_);
        ++metrics_.login_refusals;
        if (paused_) {
            interval_ = std::min(interval_ * 2, max_);
        } else {
            paused_ = changed = true;
            interval_ = initial_;
        }
        next_try_ = std::chrono::steady_clock::now() + interval_;
        why_ = why;
        metrics_.auth_paused[static_cast<std::size_t>(which_)] = 1;
    }
    if (changed && on_change_) on_change_(true, why);
    std::lock_guard lock(mutex_);
    throw_paused();
}

void login_gate::accepted() {
    bool changed = false;
    {
        std::lock_guard lock(mutex_);
        changed = paused_;
        paused_ = false;
        interval_ = initial_;
        metrics_.auth_paused[static_cast<std::size_t>(which_)] = 0;
    }
    if (changed && on_change_) on_change_(false, "");
}

bool login_gate::paused() const {
    std::lock_guard lock(mutex_);
    return paused_;
}

std::chrono::milliseconds login_gate::remaining() const {
    std::lock_guard lock(mutex_);
    if (!paused_) return std::chrono::milliseconds(0);
    return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      next_try_ - std::chrono::steady_clock::now()));
}

void login_gate::throw_paused() const {
    target_failure f(which_, true, 401, "",
                     std::string(to_string(which_)) + ": login refused (" + why_ + "); consumption paused");
    f.paused = true;
    throw f;
}

}  // namespace devicegate::worker
