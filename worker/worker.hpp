#pragma once
// devicegate-worker: consumes the first-connect stream and registers each device in
// ThingsBoard and hawkBit (docs/integrations.md §D). `concurrency` threads, each one consumer of the
// group with its own Redis connection and keep-alive HTTP connections; they share the
// ThingsBoard login. A job is acknowledged only after both targets hold the device, so a
// crash loses nothing: its job stays pending and another worker claims it after `claim_idle`.
#include "devicegate/job.hpp"
#include "devicegate/log.hpp"
#include "hawkbit_client.hpp"
#include "job_queue.hpp"
#include "metrics.hpp"
#include "thingsboard_client.hpp"
#include "worker_config.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

namespace devicegate::worker {

/// The device hash field holding the fingerprint whose metadata hawkBit holds (the worker's
/// own bookkeeping, like thingsboard_fingerprint): a renewal writes the metadata again.
inline constexpr const char* hawkbit_fingerprint_field = "hawkbit_fingerprint";
/// How often a worker writes its heartbeat to <p>workers (devicegate-ctl workers).
inline constexpr std::chrono::milliseconds worker_heartbeat_interval{5000};

/// What one attempt did; `state` (the device's Redis hash) tells it what is already done and
/// is updated with each target that succeeds, so a retry skips it.
struct registration {
    bool superseded = false;  // the device presents a newer certificate: its own job will run
    bool decommissioned = false;  // decommissioned: only `devicegate-ctl reregister` brings it back
    std::string thingsboard;  // created | credentials_updated | unchanged | already (skipped)
    std::string notified;     // delivered | unsupported | off | ""
    std::string hawkbit;      // created | exists | exists_untagged (devicegate-revoked removed) | already
    bool assigned = false;    // assigned to thingsboard_customer now
};
/// Throws target_failure.
registration register_job(const job& j, std::map<std::string, std::string>& state, thingsboard_client& thingsboard,
                          hawkbit_client& hawkbit);

/// What one decommission attempt did, per target: deleted | revoked (keep mode) | absent
/// (no such device) | already (an earlier attempt did it: `state` says so).
struct decommissioning {
    std::string thingsboard;
    std::string hawkbit;
};
/// Removes the device from both targets (delete mode) or revokes it there (keep mode), recording
/// each in `state` as it succeeds so a retry skips it. Throws target_failure.
decommissioning decommission_job(const job& j, std::map<std::string, std::string>& state,
                                 thingsboard_client& thingsboard, hawkbit_client& hawkbit,
                                 decommission_mode mode = decommission_mode::delete_);

class registration_worker {
public:
    registration_worker(const worker_config& config, worker_metrics& metrics, const logger& log);
    /// Runs the consumer threads until stop(); returns when they have finished or handed back
    /// their jobs.
    void run();
    /// Thread-safe; from a signal-handling thread.
    void stop();

private:
    void consume(std::size_t index);
    /// Writes <p>workers[consumer_name] = unix ms every heartbeat_interval, and removes it at
    /// a clean stop: a worker that died keeps its last time (devicegate-ctl workers).
    void heartbeat();
    /// Where a job came from: new, this consumer's own pending (a restart), or claimed from
    /// an idle consumer. Jobs delivered before are checked against max_deliveries.
    enum class origin { fresh, own_pending, reclaimed };
    void process(job_queue& queue, thingsboard_client& thingsboard, hawkbit_client& hawkbit, const stream_entry& entry,
                 origin from);
    /// One job being processed.
    struct job_run {
        job_queue& queue;
        const stream_entry& entry;
        std::size_t attempts;  // so far, including earlier deliveries
        std::chrono::steady_clock::time_point started;
    };
    /// Verifies the job's certificate against the tenant chain (core job_verifier, as the
    /// plugin does); dead-letters it as `untrusted` (false) when it fails.
    bool trusted(job_run& run, const job& j);
    /// A decommission carries no certificate: it is trusted only for a device the deny-list
    /// holds (by id, or by the job's serial); dead-letters it as `not_revoked` otherwise.
    bool revoked(job_run& run, const job& j);
    /// One attempt of the job; true when it is finished (acknowledged).
    bool attempt(job_run& run, const job& j, std::map<std::string, std::string>& state,
                 thingsboard_client& thingsboard, hawkbit_client& hawkbit);
    void finish_decommission(job_run& run, const job& j, const decommissioning& d,
                             const std::map<std::string, std::string>& state);
    /// Counts a reclaimed job; dead-letters it (true) past max_deliveries.
    bool delivered_too_often(job_run& run, origin from);
    void dead_letter(job_run& run, dead_reason reason, const std::string& error, const std::string& device_id,
                     std::map<std::string, std::string> info, const std::map<std::string, std::string>& state);
    /// Acknowledges a registered (or superseded) job, writing the device's state.
    void finish(job_run& run, const job& j, const registration& r, const std::map<std::string, std::string>& state);
    /// Records a failed attempt; true when the job should be tried again (after the backoff).
    bool retry_after(job_run& run, const job& j, const target_failure& f, const std::map<std::string, std::string>& state);
    /// Waits `delay` while keeping the job claimed; false if the worker is stopping.
    bool wait_for_retry(job_queue& queue, const std::string& id, std::chrono::milliseconds delay);
    /// A target refused our login: keep the job (not an attempt) until the next probe may go
    /// out; false (job handed back) if the worker is stopping.
    bool wait_while_paused(job_run& run);
    /// The longest wait before a paused target may be probed again (0: none paused).
    std::chrono::milliseconds auth_pause() const;
    void auth_transition(target t, bool paused, const std::string& why);
    void setup_transition(target t, bool paused, const std::string& why);
    bool sleep(std::chrono::milliseconds d);
    std::chrono::milliseconds backoff(std::size_t attempt) const;
    void redis_state(bool up, const std::string& why);

    const worker_config& config_;
    worker_metrics& metrics_;
    const logger& log_;
    login_gate thingsboard_gate_;
    login_gate hawkbit_gate_;
    thingsboard_session session_;
    setup_lookup thingsboard_setup_;  // device profile, customer
    setup_lookup hawkbit_setup_;      // target type, the devicegate-revoked tag
    std::atomic<bool> stopping_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<bool> rule_engine_warned_{false};
    std::atomic<bool> rule_engine_unanswered_warned_{false};
};

}  // namespace devicegate::worker
