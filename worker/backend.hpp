#pragma once
// What ThingsBoard and hawkBit clients share: the failure type the worker loop acts on and
// the retry classification of docs/integrations.md §D (retry transport errors, 408, 429 and 5xx; never
// other 4xx).
#include "devicegate/http.hpp"
#include "metrics.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
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
    bool paused = false;       // the target refused our login, or lacks a configured name: consumption pauses
    bool quota = false;        // hawkBit refused a quota (403 hawkbit.server.error.quota.*): permanent
    std::chrono::milliseconds retry_after{0};  // a Retry-After in seconds came with a 429 or 503
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
    /// The same pause for another cause: `refusals` counts each refusal, `paused_flag` is the
    /// gauge, `what` names the cause in the paused failure ("login refused").
    login_gate(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max,
               std::atomic<std::uint64_t>& refusals, std::atomic<int>& paused_flag, std::string what,
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
    std::atomic<std::uint64_t>& refusals_;
    std::atomic<int>& paused_flag_;
    std::string what_;
    std::function<void(bool, const std::string&)> on_change_;
    mutable std::mutex mutex_;
    bool paused_ = false;
    std::chrono::steady_clock::time_point next_try_{};
    std::string why_;
};

/// A name from the configuration that must exist in a target (a device profile, a customer, a
/// target type), looked up lazily and once for all worker threads: ThingsBoard may still be
/// installing when the worker starts, so nothing is checked before the first job needs it. A
/// missing name pauses consumption through `gate` (one probe per interval, one log line per
/// transition) instead of failing jobs; once found, the id is kept for the process's life.
class setup_lookup {
public:
    setup_lookup(target which, std::chrono::milliseconds initial, std::chrono::milliseconds max, worker_metrics& metrics,
                 std::function<void(bool, const std::string&)> on_change = {});
    /// The id cached under `key`, or `lookup()`'s answer ("" = missing: pauses with `missing`,
    /// a log-safe sentence naming the setting). Throws target_failure (paused, or the lookup's).
    std::string resolve(const std::string& key, const std::function<std::string()>& lookup, const std::string& missing);
    /// Forgets `key` (the target said the id no longer exists).
    void forget(const std::string& key);
    login_gate& gate() { return gate_; }
    const login_gate& gate() const { return gate_; }

private:
    login_gate gate_;
    std::mutex mutex_;
    std::map<std::string, std::string> resolved_;
};

/// Counts the failure and throws it. `call` is "POST /api/..." (no secrets).
[[noreturn]] void fail(target t, const http_response& r, std::string_view call, worker_metrics& metrics);

/// The body as JSON, or null when it is not JSON.
nlohmann::json json_or_null(const std::string& body);

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
std::string url_encode(const std::string& text);

/// hawkBit's quota errorCode ("hawkbit.server.error.quota.*") in an error body, or "".
std::string quota_code(const std::string& body);

/// Log-safe text for an operator: "<target>: <call>: HTTP 503 {...}" (bounded).
std::string excerpt(const std::string& body);

}  // namespace devicegate::worker
