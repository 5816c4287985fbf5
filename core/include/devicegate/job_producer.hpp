#pragma once
// Delivers first-connect candidates to Redis on a background thread. "First" (and "the
// certificate changed") is decided atomically in Redis by one Lua script, so reconnect
// storms and several brokers sharing a Redis enqueue each device once. While Redis is
// unreachable candidates wait in memory (bounded), then in a journal file, which is also
// written at shutdown and replayed at start: nothing is lost across a broker restart.
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
#include <vector>

namespace devicegate {

/// The Lua script: KEYS[1] device hash, KEYS[2] jobs stream; ARGV: fingerprint, serial,
/// first_seen, broker_id, first-connect job JSON, certificate-changed job JSON.
/// Returns 1 (first connect enqueued), 2 (certificate changed enqueued) or 0 (known).
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
    };

    struct counters {
        std::atomic<std::uint64_t> submitted{0};
        std::atomic<std::uint64_t> first_connect{0};
        std::atomic<std::uint64_t> certificate_changed{0};
        std::atomic<std::uint64_t> known{0};
        std::atomic<std::uint64_t> rejected{0};    // Redis refused the script for this device (bad data)
        std::atomic<std::uint64_t> overflow{0};    // dropped: every bound was full (logged)
        std::atomic<std::uint64_t> buffered{0};    // waiting in memory now
        std::atomic<std::uint64_t> journaled{0};   // waiting in the journal now
        std::atomic<std::uint64_t> link_downs{0};  // transitions to down
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

private:
    void run(background_loop& loop);
    /// Connects and loads the script; throws when Redis cannot be reached.
    std::unique_ptr<redis_connection> connect();
    /// Delivers the journal and the buffer (PING when idle); throws when the link fails.
    void deliver_all(redis_connection& redis);
    /// Waits `d` (submissions do not cut it short: no reconnect storm); false when stopping.
    bool back_off(background_loop& loop, std::chrono::milliseconds d);    void deliver(redis_connection& redis, const device_certificate& cert);
    void deliver_journal(redis_connection& redis);
    void deliver_buffer(redis_connection& redis);
    void spill_to_journal(std::size_t keep_in_memory);
    std::size_t count_journal_lines();

    options opts_;
    logger log_;
    counters counters_;
    std::string script_sha_;

    std::mutex mutex_;  // guards pending_ only
    std::vector<device_certificate> pending_;
    bool overflow_logged_ = false;

    std::deque<device_certificate> buffer_;  // thread-owned
    bool down_logged_ = false;
    background_loop loop_{"dg-jobs", [this](background_loop& loop) { run(loop); }};  // last: stops first
};

}  // namespace devicegate
