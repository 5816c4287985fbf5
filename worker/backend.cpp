#include "backend.hpp"

#include "devicegate/log.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

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
    // 429 comes from hawkBit's DosFilter (status only, no body, no Retry-After) or ThingsBoard's
    // rate limits: transient. hawkBit's quotas are 403 with an errorCode
    // "hawkbit.server.error.quota.*" (AssignmentQuotaExceededException, RestConfiguration):
    // the same request fails the same way until an operator acts, so it is permanent.
    const bool retry = s == 408 || s == 429 || s >= 500;
    std::string body = excerpt(r.body);
    const std::string quota = t == target::hawkbit && s == 403 ? quota_code(r.body) : "";
    if (!quota.empty()) {
        target_failure f(t, false, s, body, where + "hawkBit quota exceeded (" + quota + "): " + body);
        f.quota = true;
        throw f;
    }
    target_failure f(t, retry, s, body, where + "HTTP " + std::to_string(s) + (body.empty() ? "" : " " + body));
    // Neither hawkBit's DosFilter nor ThingsBoard send Retry-After; a proxy in front may. Only
    // the delta-seconds form is read (an HTTP-date: the worker's own backoff).
    const std::string& ra = r.retry_after;
    if ((s == 429 || s == 503) && !ra.empty() && ra.size() <= 6 &&
        std::all_of(ra.begin(), ra.end(), [](unsigned char c) { return std::isdigit(c); })) {
        f.retry_after = std::chrono::seconds(std::stol(ra));
    }
    throw f;
}

std::string quota_code(const std::string& body) {
    const auto j = json_or_null(body);
    if (!j.is_object() || !j.contains("errorCode") || !j["errorCode"].is_string()) return "";
    const std::string code = j["errorCode"].get<std::string>();
    return code.rfind("hawkbit.server.error.quota.", 0) == 0 ? log_safe(code, 120) : "";
}

nlohmann::json json_or_null(const std::string& body) {
    try {
        return nlohmann::json::parse(body);
    } catch (const nlohmann::json::exception&) {
        return nullptr;
    }
}

std::string url_encode(const std::string& text) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
        else out += std::string("%") + hex[c >> 4] + hex[c & 15];
    }
    return out;
}

login_gate::login_gate(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                       worker_metrics& metrics, std::function<void(bool, const std::string&)> on_change)
    : login_gate(which, initial, max, metrics.login_refusals, metrics.auth_paused[static_cast<std::size_t>(which)],
                 "login refused", std::move(on_change)) {}

login_gate::login_gate(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                       std::atomic<std::uint64_t>& refusals, std::atomic<int>& paused_flag, std::string what,
                       std::function<void(bool, const std::string&)> on_change)
    : which_(which), initial_(initial), max_(max), interval_(initial), refusals_(refusals), paused_flag_(paused_flag),
      what_(std::move(what)), on_change_(std::move(on_change)) {}

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
        ++refusals_;
        if (paused_) {
            interval_ = std::min(interval_ * 2, max_);
        } else {
            paused_ = changed = true;
            interval_ = initial_;
        }
        next_try_ = std::chrono::steady_clock::now() + interval_;
        why_ = why;
        paused_flag_ = 1;
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
        paused_flag_ = 0;
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
                     std::string(to_string(which_)) + ": " + what_ + " (" + why_ + "); consumption paused");
    f.paused = true;
    throw f;
}

setup_lookup::setup_lookup(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max,
                           worker_metrics& metrics, std::function<void(bool, const std::string&)> on_change)
    : gate_(which, initial, max, metrics.setup_missing, metrics.setup_paused[static_cast<std::size_t>(which)],
            "configuration missing", std::move(on_change)) {}

std::string setup_lookup::resolve(const std::string& key, const std::function<std::string()>& lookup,
                                  const std::string& missing) {
    std::lock_guard lock(mutex_);  // one thread asks; the others wait for its answer
    if (auto it = resolved_.find(key); it != resolved_.end()) return it->second;
    gate_.before_login();  // paused: no request before the next probe is due
    std::string id = lookup();
    if (id.empty()) gate_.refused(missing);
    gate_.accepted();
    resolved_[key] = id;
    return id;
}

void setup_lookup::forget(const std::string& key) {
    std::lock_guard lock(mutex_);
    resolved_.erase(key);
}

}  // namespace devicegate::worker
