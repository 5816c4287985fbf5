#pragma once
// What ThingsBoard and hawkBit clients share: the failure type the worker loop acts on and
// the retry classification of docs/integrations.md §D (retry transport errors, 408, 429 and 5xx; never
// other 4xx).
#include "devicegate/http.hpp"
#include "metrics.hpp"

#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devicegate::worker {

struct target_failure : std::runtime_error {
    target_failure(target which_target, bool may_retry, long http_status, std::string excerpt, const std::string& what)
        : std::runtime_error(what), which(which_target), retryable(may_retry), status(http_status),
          body_excerpt(std::move(excerpt)) {}
    target which;
    bool retryable;
    bool paused = false;       // the target refused our login: consumption pauses (login_gate)
    long status;               // 0: transport error
    std::string body_excerpt;  // log-safe, bounded
};

/// A refused login pauses the use of a target instead of failing jobs: a wrong password must
/// not dead-letter every job, and must not lock the shared account (ThingsBoard's
/// maxFailedLoginAttempts counts every failure: DefaultSystemSecurityService). After a refusal no
/// caller may log in before the interval runs out; then exactly one caller probes, and the
/// interval doubles (up to `max`) while refusals continue.
class login_gate {
public:
    /// `on_change(paused, why)` is called once per transition (for the one log line).
    login_gate(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max, worker_metrics& metrics,
               std::function<void(bool, const std::string&)> on_change = {});
    /// Before a login: returns if the caller may try (it then owns the probe), throws the
    /// paused target_failure otherwise, without any request.
    void before_login();
    /// Records a refusal (`why`: log-safe, no secret) and throws the paused target_failure.
    [[noreturn]] void refused(const std::string& why);
    void accepted();
    bool paused() const;
    /// Until the next probe may go out (0 if not paused).
    std::chrono::milliseconds remaining() const;

private:
    [[noreturn]] void throw_paused() const;

    target which_;
    std::chrono::milliseconds initial_, max_, interval_;
    worker_metrics& metrics_;
    std::function<void(bool, const std::string&)> on_change_;
    mutable std::mutex mutex_;
    bool paused_ = false;
    std::chrono::steady_clock::time_point next_try_{};
    std::string why_;
};

/// Counts the failure and throws it. `call` is "POST /api/..." (no secrets).
[[noreturn]] void fail(target t, const http_response& r, std::string_view call, worker_metrics& metrics);

/// Log-safe text for an operator: "<target>: <call>: HTTP 503 {...}" (bounded).
std::string excerpt(const std::string& body);

}  // namespace devicegate::worker
