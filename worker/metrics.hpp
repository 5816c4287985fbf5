#pragma once
// devicegate-worker's counters, rendered in the Prometheus text format (version 0.0.4).
// Lock-free: every thread bumps atomics; the /metrics handler reads them.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace devicegate::worker {

enum class target { thingsboard, hawkbit };
const char* to_string(target t) noexcept;

/// Why a call to a target failed, as a metrics label.
enum class error_kind { transport, http_429, http_4xx, http_5xx, auth };
const char* to_string(error_kind k) noexcept;

enum class dead_reason { exhausted, permanent, malformed, poison, untrusted, not_revoked, quota };
const char* to_string(dead_reason r) noexcept;

class worker_metrics {
public:
    using counter = std::atomic<std::uint64_t>;

    counter jobs_done;         // both targets registered (or already were)
    counter jobs_decommissioned;  // decommission jobs carried out (removed, or already gone)
    counter jobs_superseded;   // a newer certificate's job exists: nothing to do
    counter attempts_failed;   // one attempt of a job failed (retried or dead-lettered)
    counter jobs_retried;      // an attempt is scheduled again after a backoff
    counter jobs_reclaimed;    // taken over from a consumer that went idle (crashed worker)
    counter jobs_requeued;     // handed back at shutdown while waiting for a retry
    std::array<counter, 7> jobs_dead{};                   // by dead_reason
    std::array<std::array<counter, 5>, 2> target_errors{};  // [target][error_kind]
    std::array<counter, 2> created{};                     // [target]: new device / new target
    counter credentials_updated;     // ThingsBoard credentials replaced (re-enrolled device)
    counter thingsboard_logins;
    counter thingsboard_refreshes;
    counter rule_engine_unsupported;  // JSON 404 on /api/rule-engine (ThingsBoard < 3.8)
    counter rule_engine_unanswered;   // 408: queued, no reply node answered (the stock root chain)
    counter attribute_writes;         // server-scope attribute writes (the notification)
    counter credentials_version_conflicts;  // 409 errorCode 35 on a credentials save, re-read
    counter login_refusals;           // refused logins (401 on /api/auth/login, or hawkBit 401)
    std::array<std::atomic<int>, 2> auth_paused{};  // [target] 1 while consumption waits for a login
    counter setup_missing;            // lookups of a configured name (profile, customer, target type) that found none
    std::array<std::atomic<int>, 2> setup_paused{};  // [target] 1 while consumption waits for a configured name
    counter thingsboard_customer_assignments;  // devices assigned to thingsboard_customer
    counter hawkbit_metadata_writes;  // target metadata entries created or updated
    counter thingsboard_credentials_revoked;  // keep-mode decommission: X.509 credentials replaced
    counter hawkbit_actions_canceled;  // keep-mode decommission: open actions canceled
    std::atomic<std::int64_t> in_flight{0};
    std::atomic<int> redis_up{0};

    void dead(dead_reason r) { ++jobs_dead[static_cast<std::size_t>(r)]; }
    /// Dead-lettered jobs, every reason.
    std::uint64_t dead_total() const noexcept {
        std::uint64_t n = 0;
        for (const auto& c : jobs_dead) n += c.load();
        return n;
    }
    void error(target t, error_kind k) { ++target_errors[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)]; }
    /// One job's time from its first attempt to done.
    void observe_registration(std::chrono::microseconds took);

    std::string render() const;

    static constexpr std::array<double, 12> buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

private:
    std::array<counter, buckets.size()> bucket_counts_{};
    counter duration_count_;
    counter duration_sum_us_;
};

}  // namespace devicegate::worker
