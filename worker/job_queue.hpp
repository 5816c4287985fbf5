#pragma once
// The worker's side of the Redis model (core/include/devicegate/redis_model.hpp): the
// first-connect stream as one consumer of a consumer group, the dead-letter stream and the
// device hashes. One instance per worker thread (a hiredis connection is not thread-safe).
// Throws redis_io_error when the link breaks (the caller reconnects; un-acked jobs stay
// pending and are read again) and redis_data_error for answers it cannot use.
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace devicegate::worker {

// Entries are devicegate::stream_entry (redis.hpp), fields job_field::* (redis_model.hpp):
// "type", "job" (JSON); "attempts" after a requeue.

class job_queue {
public:
    job_queue(const redis_options& options, redis_model model, std::string group, std::string consumer);
    /// Bound of the dead-letter stream (XADD MAXLEN ~ N: Redis trims whole macro nodes, so it
    /// may hold a little more). 0 = unbounded.
    void set_dead_letter_max(std::size_t n) { dead_letter_max_ = n; }

    /// XGROUP CREATE ... 0 MKSTREAM (an existing group is fine).
    void ensure_group();
    /// Jobs delivered to this consumer earlier and not acknowledged (a restart with the same name).
    std::vector<stream_entry> own_pending(std::size_t count);
    /// New jobs, waiting at most `block`.
    std::vector<stream_entry> read_new(std::size_t count, std::chrono::milliseconds block);
    /// XAUTOCLAIM: jobs idle for `min_idle` under any consumer (one that died) become ours.
    std::vector<stream_entry> claim_idle(std::chrono::milliseconds min_idle, std::size_t count);
    /// How often the job was delivered (XPENDING), 0 if it is not pending.
    long long deliveries(const std::string& id);
    /// Resets the job's idle time so that no other worker claims it while we wait to retry.
    void touch(const std::string& id);
    /// Writes the device's registration state, acknowledges and deletes the job (the stream
    /// keeps only unfinished jobs), atomically. No HSET when `device_id` is empty.
    void done(const std::string& id, const std::string& device_id, const std::map<std::string, std::string>& state);
    /// Moves the job to the dead-letter stream with `info` (error, target, status, ...) and
    /// writes the device's state, atomically. Returns the dead letter's id (what
    /// `devicegate-ctl dlq list` shows and `dlq replay` takes).
    std::string dead_letter(const stream_entry& e, const std::map<std::string, std::string>& info, const std::string& device_id,
                     const std::map<std::string, std::string>& state);
    /// Hands the job back to the stream as a new entry (shutdown while waiting to retry).
    void requeue(const stream_entry& e, std::size_t attempts);

    std::map<std::string, std::string> device(const std::string& device_id);
    /// Whether the deny-list holds the device id, or `serial_hex` (normalized; "" = not asked).
    bool revoked(const std::string& device_id, const std::string& serial_hex);
    void update_device(const std::string& device_id, const std::map<std::string, std::string>& fields);

private:
    std::vector<stream_entry> read(const std::string& from, std::size_t count, std::chrono::milliseconds block);
    redis_reply_ptr transaction(std::vector<std::vector<std::string>> commands, const std::string& device_id,
                     const std::map<std::string, std::string>& state);

    redis_connection redis_;
    redis_model model_;
    std::string group_;
    std::string consumer_;
    std::string claim_cursor_ = "0-0";
    std::size_t dead_letter_max_ = 0;
};

}  // namespace devicegate::worker
