#pragma once
// Delivers first-connect candidates to Redis on a background thread. "First" (and "the
// certificate changed") is decided atomically in Redis by one Lua script, so reconnect
// storms and several brokers sharing a Redis enqueue each device once. While Redis is
// unreachable candidates wait in memory (bounded), then in a journal file, which is also
// written at shutdown and replayed at start: nothing is lost across a broker restart. A job
// leaves memory only once its journal record is written and fsynced; while the journal cannot
// be written (disk full, I/O error) jobs stay in memory past the bound and the journal is
// tried again on each pass.
// Jobs go in batches: the thread lingers batch_linger after a submission wakes it, then sends
// the jobs marker GET, the batch's script calls and ROLE in one pipelined round trip.
#include "devicegate/background_loop.hpp"
#include "devicegate/job.hpp"
#include "devicegate/log.hpp"
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace devicegate {

/// The Lua script: KEYS[1] device hash, KEYS[2] jobs stream; ARGV: fingerprint, serial,
/// first_seen, broker_id, first-connect job JSON (encode_job), and optionally the
/// certificate-changed job JSON; without it the script writes that job by replacing the
/// first one's {"type":"first_connect" prefix (encode_job writes the type first), so the
/// producer encodes each job once.
/// Returns 1 (first connect enqueued), 2 (certificate changed enqueued) or 0 (known).
/// XADD comes before HSET: Redis does not roll a script back, so if a command fails half-way
/// (an error reply), the device must not be left "known" without its job.
extern const char* const first_connect_script;

class job_producer {
public:
    struct options {
        redis_options redis;
        redis_model model;
        std::string journal_file;
        std::size_t memory_limit = 1000;                  // candidates held in memory while Redis is down
        std::uint64_t journal_max_bytes = 1ull << 30;     // then at most this much journal
        std::size_t pending_limit = 1'000'000;            // broker -> thread hand-over queue
        /// How long a written batch waits for a replica (WAIT 1) when the master lists replicas;
        /// capped at half of redis.command_timeout.
        std::chrono::milliseconds replication_timeout{1000};
    };

    /// How long the thread waits after a submission woke it before it takes the queue. A
    /// connect storm (~800 first connects/s per broker) then sends ~40 jobs per round trip: each
    /// round trip is a write, a blocking read and the thread's wake-ups on the broker's CPU,
    /// which issue 13 counts per connect. Measured with the broker pinned to its own core
    /// (`DEVICEGATE_STORM_PIN=1`): broker CPU per first connect 1.29 ms with 5 ms (and the
    /// fleet's 10 ms), 1.20–1.21 ms with 50 ms, native 1.16–1.18 ms. Jobs are asynchronous
    /// (the worker registers devices seconds later), so 50 ms costs nothing; a job submitted
    /// less than 50 ms before a stop goes to the journal and is delivered at the next start.
    static constexpr std::chrono::milliseconds batch_linger{50};

    struct counters {
        std::atomic<std::uint64_t> submitted{0};
        std::atomic<std::uint64_t> first_connect{0};
        std::atomic<std::uint64_t> certificate_changed{0};
        std::atomic<std::uint64_t> known{0};
        std::atomic<std::uint64_t> rejected{0};    // a malformed journal line (skipped, logged)
        std::atomic<std::uint64_t> error_replies{0};  // error replies to the script: the job was kept and retried
        std::atomic<std::uint64_t> data_losses{0};    // Redis lost the jobs marker (restart without data, FLUSHALL)
        std::atomic<std::uint64_t> unreplicated{0};  // batches no replica confirmed in time: kept, sent again
        std::atomic<std::uint64_t> overflow{0};    // dropped: every bound was full (logged)
        std::atomic<std::uint64_t> buffered{0};    // waiting in memory now
        std::atomic<std::uint64_t> journaled{0};   // waiting in the journal now
        /// Journal writes (appends, rewrites, removals) that failed: the jobs stayed in memory
        /// (beyond memory_limit) or the old journal was kept; retried on the next pass.
        std::atomic<std::uint64_t> journal_failures{0};
        std::atomic<std::uint64_t> lost{0};  // in memory at stop() with the journal unwritable (logged)
        std::atomic<std::uint64_t> link_downs{0};  // transitions to down
        std::atomic<std::uint64_t> batches{0};     // pipelined writes of script calls
        /// Writes with a blocking read for an answer (a pipeline counts once) the thread made
        /// after connecting: one per batch on a master without replicas.
        std::atomic<std::uint64_t> round_trips{0};
        std::atomic<bool> link_up{false};
    };

    job_producer(options opts, logger log);
    ~job_producer();
    job_producer(const job_producer&) = delete;
    job_producer& operator=(const job_producer&) = delete;

    void start();
    /// Stops the thread; whatever was not delivered is appended to the journal.
    void stop() noexcept;
    /// Broker thread: hand over a candidate (a short lock, no I/O).
    void submit(device_certificate cert);

    const counters& stats() const noexcept { return counters_; }
    /// Changes whenever a submitted job may be gone: Redis was seen to have lost its data, or
    /// the producer dropped a job (a full bound, a malformed journal line, lost at stop).
    /// Whoever remembers "already submitted" certificates must forget them then, or a
    /// reconnect would not enqueue again; read it before submit(), since submit() may drop.
    std::uint64_t generation() const noexcept {
        return counters_.data_losses.load() + counters_.overflow.load() + counters_.rejected.load() +
               counters_.lost.load();
    }

private:
    void run(background_loop& loop);
    /// Connects and loads the script; throws when Redis cannot be reached.
    std::unique_ptr<redis_connection> connect();
    /// Waits `d` (submissions do not cut it short: no reconnect storm); false when stopping.
    bool back_off(background_loop& loop, std::chrono::milliseconds d);
    /// Connected: waits for a submission (or the 1 s health check) unless work waits, then
    /// lingers batch_linger when there are submissions so that they travel together.
    void wait_for_work(background_loop& loop);
    /// Reads (plants) the jobs marker; also the idle health check that keeps $SYS jobs/link
    /// honest. Counts a data loss when the marker vanished or changed. `got`: the reply to
    /// the marker GET when a batch's pipeline carried it (null: sends GET itself).
    void check_marker(redis_connection& redis, redis_reply_ptr got = nullptr);
    /// The journal, then the buffer, and the jobs marker (with the first batch, or alone when
    /// nothing is sent); throws the first error reply after both, an I/O error or the marker's
    /// error reply at once.
    void deliver_waiting(redis_connection& redis);
    /// Delivers `jobs` from the front. A job that gets an error reply is kept, and so are the
    /// later jobs of its device, which joins `held` (order matters: the script tells "first"
    /// from "changed"); other devices go on. What is not retired stays in `jobs`, in order.
    /// Throws the first error reply after the pass, an I/O error at once.
    void deliver_all(redis_connection& redis, std::deque<device_certificate>& jobs,
                     std::unordered_set<std::string>& held);
    void deliver_journal(redis_connection& redis, std::unordered_set<std::string>& held);
    /// After a batch: returns when a replica has it or the master lists none (ROLE, read from
    /// `role` when the batch's pipeline ended with it after every write, else asked now);
    /// throws redis_io_error otherwise, so the batch is kept and sent again after reconnecting.
    void confirm_replicated(redis_connection& redis, const redisReply* role);
    /// One pipeline for `batch`: the marker GET first when `with_marker`, the script calls,
    /// ROLE last (after every write, for confirm_replicated).
    std::vector<std::vector<std::string>> batch_calls(const std::deque<device_certificate>& batch,
                                                      bool with_marker) const;
    /// The script call for one job (EVALSHA).
    std::vector<std::string> script_call(const device_certificate& cert) const;
    /// The script's reply to `call` for one job: retired (counted) on its integer answer
    /// (after sending the script body on NOSCRIPT); throws error_reply for anything else.
    void retire(redis_connection& redis, std::vector<std::string>& call, redis_reply_ptr reply,
                const device_certificate& cert);
    /// Moves the hand-over queue into buffer_, writing each job's PEM from its DER.
    void take_pending();
    /// Logs (once) that Redis refuses jobs, and drops the link.
    void note_refusal(const std::string& device_id, const std::string& what);
    /// Appends the oldest jobs beyond `keep_in_memory` to the journal (the journal is
    /// delivered first, so each device's jobs keep their order). A job leaves memory only once
    /// its record is written and fsynced; on an error the append is cut back off and every
    /// job stays. Past journal_max_bytes the newest jobs are dropped (counted, logged).
    void spill_to_journal(std::size_t keep_in_memory);
    /// Replaces the journal with `jobs` (written and fsynced before the rename); false (logged,
    /// counted) when it cannot, and then the old journal stays as it was.
    bool rewrite_journal(const std::deque<device_certificate>& jobs);
    /// Drops the `n` newest jobs: the journal is full.
    void drop_newest(std::size_t n);
    /// stop() with the journal unwritable: the jobs in memory are lost; says which.
    void log_lost_at_stop();
    /// A failed journal write: counted; one error line per cause, again once a minute while it lasts.
    void note_journal_failure(const std::string& cause);
    void note_journal_written();
    std::size_t count_journal_lines();

    options opts_;
    logger log_;
    counters counters_;
    std::string script_sha_;
    std::string marker_;  // the value of the jobs marker key last seen in Redis ("" = not yet)
    bool marker_due_ = false;  // this pass has not read the marker yet: its first batch carries the GET

    std::mutex mutex_;  // guards pending_ only
    std::vector<device_certificate> pending_;
    bool overflow_logged_ = false;
    std::vector<device_certificate> taken_;  // thread-owned; swapped with pending_

    std::deque<device_certificate> buffer_;  // thread-owned
    bool down_logged_ = false;
    std::string journal_error_;  // thread-owned: the last journal write error ("" = writable)
    std::chrono::steady_clock::time_point journal_error_logged_{};
    bool refused_logged_ = false;  // error replies were logged; a clean pass logs the recovery
    background_loop loop_{"dg-jobs", [this](background_loop& loop) { run(loop); }};  // last: stops first
};

}  // namespace devicegate
