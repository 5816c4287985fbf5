#include "devicegate/job_producer.hpp"

#include "devicegate/pki.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <unordered_set>
#include <utility>

namespace devicegate {

namespace {

/// Redis answered with an error (OOM, READONLY after a failover, LOADING, WRONGTYPE, ...) or
/// with something that is not the expected shape: not a definitive answer, so the job is kept
/// and retried like one that met a lost link.
struct error_reply : std::runtime_error {
    error_reply(std::string device, const std::string& text) : std::runtime_error(text), device_id(std::move(device)) {}
    std::string device_id;  // "" when no job was involved (the marker check)
};

/// After this many error replies in a row the cause is taken to be Redis-wide (OOM,
/// READONLY): the pass stops instead of sending every buffered job to be refused.
constexpr int max_consecutive_error_replies = 8;

/// Jobs sent in one pipelined write (a connect storm's jobs arrive faster than one round trip each).
constexpr std::size_t max_pipelined_jobs = 64;

/// Jobs appended to the journal per write and fsync (~1.5 KB each).
constexpr std::size_t max_spilled_jobs = 1024;

std::string random_token() {
    std::random_device rd;
    unsigned char bytes[16];
    for (auto& b : bytes) b = static_cast<unsigned char>(rd());
    return to_hex(bytes, sizeof bytes);
}

}  // namespace

const char* const first_connect_script = R"lua(
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if not fp then
  redis.call('XADD', KEYS[2], '*', 'type', 'first_connect', 'job', ARGV[5])
  redis.call('HSET', KEYS[1], 'first_seen', ARGV[3], 'serial', ARGV[2], 'fingerprint', ARGV[1], 'broker', ARGV[4])
  return 1
end
if fp ~= ARGV[1] then
  local job = ARGV[6]
  if not job then
    local prefix = '{"type":"first_connect"'
    if string.sub(ARGV[5], 1, #prefix) ~= prefix then
      return redis.error_reply('DGJOB the first-connect job does not start with ' .. prefix)
    end
    job = '{"type":"certificate_changed"' .. string.sub(ARGV[5], #prefix + 1)
  end
  redis.call('XADD', KEYS[2], '*', 'type', 'certificate_changed', 'job', job)
  redis.call('HSET', KEYS[1], 'serial', ARGV[2], 'fingerprint', ARGV[1], 'cert_changed_at', ARGV[3], 'broker', ARGV[4])
  return 2
end
return 0
)lua";

job_producer::job_producer(options opts, logger log) : opts_(std::move(opts)), log_(std::move(log)) {}

job_producer::~job_producer() { stop(); }

void job_producer::start() {
    counters_.journaled = count_journal_lines();
    if (counters_.journaled > 0) {
        log_.notice("devicegate: jobs journal " + opts_.journal_file + " holds " +
                    std::to_string(counters_.journaled.load()) + " undelivered first-connect jobs; delivering them");
    }
    loop_.start();
}

void job_producer::stop() noexcept { loop_.stop(); }

void job_producer::submit(device_certificate cert) {
    bool was_empty = false;
    {
        std::lock_guard lock(mutex_);
        if (pending_.size() >= opts_.pending_limit) {
            ++counters_.overflow;
            if (!overflow_logged_) {
                overflow_logged_ = true;
                log_.error("devicegate: jobs overflow: " + std::to_string(opts_.pending_limit) +
                           " first-connect jobs are waiting for the delivery thread; dropping device=" + cert.device_id);
            }
            return;
        }
        overflow_logged_ = false;
        was_empty = pending_.empty();
        pending_.push_back(std::move(cert));
    }
    ++counters_.submitted;
    // Only the first job of a batch wakes the thread (a futex wake and a context switch per
    // job before): it takes the whole queue when it runs, and a wake between its taking the
    // queue and its next wait is kept by background_loop (woken_), so none is missed.
    if (was_empty) loop_.wake();
}

void job_producer::take_pending() {
    {
        std::lock_guard lock(mutex_);
        taken_.swap(pending_);
    }
    for (auto& c : taken_) {
        if (c.certificate_pem.empty() && !c.certificate_der.empty()) {
            c.certificate_pem = pem_from_der(c.certificate_der);  // here, not on the broker thread
            c.certificate_der = std::string();
        }
        buffer_.push_back(std::move(c));
    }
    taken_.clear();  // keeps its capacity: the next swap hands it to submit()
}

bool job_producer::back_off(background_loop& loop, std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
        if (!loop.wait_until(until)) return false;
    }
    return true;
}

void job_producer::wait_for_work(background_loop& loop) {
    bool idle = false;
    {
        std::lock_guard lock(mutex_);
        idle = pending_.empty() && buffer_.empty();
    }
    // Idle: wait for a submission (wake) or a second, then read the jobs marker (health check).
    if (idle) loop.wait_for(std::chrono::seconds(1));
    bool submitted = false;
    {
        std::lock_guard lock(mutex_);
        submitted = !pending_.empty();
    }
    // Let the storm's next jobs join this batch. back_off sleeps to a deadline, so the sticky
    // wake() of a submission that arrives meanwhile does not end the linger early (nor spin it);
    // stop() does. Nothing waits here while idle: only a submission leads here.
    if (submitted) back_off(loop, batch_linger);
}

void job_producer::run(background_loop& loop) {
    std::unique_ptr<redis_connection> redis;
    std::chrono::milliseconds backoff{100};
    for (;;) {
        // Not connected: straight on to (re)connect and deliver the backlog.
        if (redis) wait_for_work(loop);
        take_pending();
        counters_.buffered = buffer_.size();
        if (loop.stopping()) {
            spill_to_journal(0);
            if (!buffer_.empty()) log_lost_at_stop();  // nowhere left to keep them
            counters_.buffered = buffer_.size();
            return;
        }
        try {
            if (!redis) redis = connect();
            deliver_waiting(*redis);
            counters_.buffered = buffer_.size();
            // Reset on a clean pass, not on connect: Redis that answers every job with an
            // error reply accepts the connection each time.
            backoff = std::chrono::milliseconds(100);
            // Logged here, not on connect: a plain redis:// URL naming a replica connects fine
            // and then answers READONLY, which would log "up" and "down" once per backoff.
            if (down_logged_) log_.notice("devicegate: jobs link to redis up again (" + opts_.redis.describe() + ")");
            down_logged_ = false;
            if (refused_logged_) {
                log_.notice("devicegate: redis accepts first-connect jobs again (" +
                            std::to_string(counters_.error_replies.load()) + " error replies so far)");
                refused_logged_ = false;
            }
        } catch (const error_reply& e) {
            redis.reset();  // a failover may have moved the primary behind the same address
            note_refusal(e.device_id, e.what());
        } catch (const std::exception& e) {
            redis.reset();
            counters_.link_up = false;
            if (!down_logged_) {
                ++counters_.link_downs;
                log_.warning("devicegate: jobs link to redis down (" + opts_.redis.describe() + "): " +
                             log_safe(e.what(), 300) + "; buffering first-connect jobs");
                down_logged_ = true;
            }
        }
        if (!redis) {
            spill_to_journal(opts_.memory_limit);
            counters_.buffered = buffer_.size();
            if (!back_off(loop, backoff)) continue;  // stopping: the next pass journals and returns
            backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        }
    }
}

std::unique_ptr<redis_connection> job_producer::connect() {
    auto redis = std::make_unique<redis_connection>(opts_.redis);
    script_sha_ = reply_string(redis->command({"SCRIPT", "LOAD", first_connect_script}).get(), "SCRIPT LOAD");
    counters_.link_up = true;
    return redis;
}

void job_producer::note_refusal(const std::string& device_id, const std::string& what) {
    if (refused_logged_) return;
    log_.warning("devicegate: " +
                 (device_id.empty() ? std::string("jobs marker") : "first-connect job for device=" + device_id) +
                 " refused by Redis: " + log_safe(what, 300) + "; kept with " +
                 std::to_string(buffer_.size() + counters_.journaled.load()) +
                 " waiting jobs, retrying with backoff (counted in $SYS jobs/error_replies)");
    refused_logged_ = true;
}

void job_producer::check_marker(redis_connection& redis, redis_reply_ptr got) {
    // A key that lives as long as Redis's data: if it vanishes or changes, Redis restarted
    // without its data, was flushed, or failed over to an empty replica. The jobs it held are
    // gone, so certificates already handed over must be handed over again.
    const std::string key = opts_.model.jobs_marker();
    std::string current;
    try {
        if (!got) {
            ++counters_.round_trips;
            got = redis.command({"GET", key});
        }
        auto value = reply_optional_string(got.get(), "GET " + key);
        if (!value) {
            // NX: another broker sharing this Redis may plant it first; read back whichever won.
            // Rare (first start, data loss): two more round trips.
            counters_.round_trips += 2;
            expect_ok(redis.command({"SET", key, random_token(), "NX"}).get(), "SET " + key);
            value = reply_string(redis.command({"GET", key}).get(), "GET " + key);
        }
        current = std::move(*value);
    } catch (const redis_data_error& e) {
        throw error_reply("", e.what());
    }
    if (!marker_.empty() && current != marker_) {
        ++counters_.data_losses;
        log_.warning("devicegate: redis " + opts_.redis.describe() + " lost its data (" + key +
                     " changed: a restart without persistence, FLUSHALL, or a failover to an empty replica); "
                     "devices that connect again are enqueued again");
    }
    marker_ = std::move(current);
}

std::vector<std::string> job_producer::script_call(const device_certificate& cert) const {
    // One job JSON: the script derives the certificate_changed job from it (its type prefix).
    return {"EVALSHA",        script_sha_,           "2",
            opts_.model.device(cert.device_id),       opts_.model.jobs(),
            cert.fingerprint_sha256,                  cert.serial_hex,
            std::to_string(cert.first_seen),          cert.broker_id,
            encode_job(cert, job_type::first_connect)};
}

void job_producer::retire(redis_connection& redis, std::vector<std::string>& call, redis_reply_ptr reply,
                          const device_certificate& cert) {
    if (is_error_code(reply.get(), "NOSCRIPT")) {
        call[0] = "EVAL";  // Redis restarted or SCRIPT FLUSH: send the body once more
        call[1] = first_connect_script;
        ++counters_.round_trips;  // also tells deliver_all that its batch's ROLE came before this write
        reply = redis.command(call);
    }
    // Only the script's own answer retires the job; anything else is retried.
    long long answer = 0;
    try {
        answer = reply_integer(reply.get(), "first-connect script");
    } catch (const redis_data_error& e) {
        throw error_reply(cert.device_id, e.what());
    }
    switch (answer) {
        case 1: ++counters_.first_connect; break;
        case 2: ++counters_.certificate_changed; break;
        default: ++counters_.known; break;
    }
}

void job_producer::deliver_waiting(redis_connection& redis) {
    // The journal holds the older jobs. A device held back there holds back its newer jobs in
    // the buffer too, but other devices' jobs go on.
    std::unordered_set<std::string> held;
    std::optional<error_reply> refused;
    // Every pass reads the marker: in the first batch's pipeline (no round trip of its own).
    marker_due_ = true;
    try {
        deliver_journal(redis, held);
    } catch (const error_reply& e) {
        if (e.device_id.empty()) throw;  // the marker: the pass stops, as when it went first
        refused = e;
    }
    try {
        deliver_all(redis, buffer_, held);
    } catch (const error_reply& e) {
        if (e.device_id.empty()) throw;
        if (!refused) refused = e;
    }
    if (marker_due_) check_marker(redis);  // no batch went out (idle, or every job held)
    if (refused) throw *refused;
}

namespace {

/// Moves up to `limit` jobs from the front of `jobs` into `batch`: jobs of held devices go to
/// `kept`, and the batch ends before a device's second job (its order matters: the script
/// tells "first" from "changed" by what the previous job left).
void take_batch(std::deque<device_certificate>& jobs, const std::unordered_set<std::string>& held,
                std::deque<device_certificate>& kept, std::deque<device_certificate>& batch, std::size_t limit) {
    while (!jobs.empty() && batch.size() < limit) {
        device_certificate& next = jobs.front();
        if (held.count(next.device_id) > 0) {
            kept.push_back(std::move(next));
        } else if (std::any_of(batch.begin(), batch.end(),
                               [&](const device_certificate& c) { return c.device_id == next.device_id; })) {
            return;
        } else {
            batch.push_back(std::move(next));
        }
        jobs.pop_front();
    }
}

}  // namespace

std::vector<std::vector<std::string>> job_producer::batch_calls(const std::deque<device_certificate>& batch,
                                                                 bool with_marker) const {
    std::vector<std::vector<std::string>> calls;
    calls.reserve(batch.size() + 2);
    if (with_marker) calls.push_back({"GET", opts_.model.jobs_marker()});
    for (const auto& cert : batch) calls.push_back(script_call(cert));
    calls.push_back({"ROLE"});
    return calls;
}

void job_producer::deliver_all(redis_connection& redis, std::deque<device_certificate>& jobs,
                               std::unordered_set<std::string>& held) {
    std::deque<device_certificate> kept, batch;
    std::deque<device_certificate> sent;  // accepted by the master, not yet confirmed by a replica
    std::optional<error_reply> first;
    redis_reply_ptr role;  // the last batch's ROLE, while no write came after it
    // Order per device: sent, then kept, then the unanswered rest of the batch, then the others.
    // `all`: the sent jobs go again too (the script answers "known" for a job that did arrive,
    // so a first-connect job is never doubled).
    auto put_back = [&](bool all) {
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) jobs.push_front(std::move(*it));
        for (auto it = kept.rbegin(); it != kept.rend(); ++it) jobs.push_front(std::move(*it));
        if (all) {
            for (auto it = sent.rbegin(); it != sent.rend(); ++it) jobs.push_front(std::move(*it));
        }
    };
    try {
        for (int in_a_row = 0; !jobs.empty() && in_a_row < max_consecutive_error_replies;) {
            // Pipelined: one write and one read per batch instead of a round trip per job;
            // one job at a time after an error reply, so a Redis-wide refusal stops early.
            // The marker GET and ROLE travel with the calls: one round trip per batch.
            take_batch(jobs, held, kept, batch, in_a_row > 0 ? 1 : max_pipelined_jobs);
            if (batch.empty()) break;  // every remaining job is held
            const bool with_marker = std::exchange(marker_due_, false);
            auto calls = batch_calls(batch, with_marker);
            auto replies = redis.pipeline(calls);
            ++counters_.batches;
            ++counters_.round_trips;
            const auto round_trips = counters_.round_trips.load();
            std::size_t i = 0;
            if (with_marker) check_marker(redis, std::move(replies[i++]));
            for (; i + 1 < replies.size(); ++i) {
                try {
                    retire(redis, calls[i], std::move(replies[i]), batch.front());
                    sent.push_back(std::move(batch.front()));
                    in_a_row = 0;
                } catch (const error_reply& e) {
                    ++counters_.error_replies;
                    ++in_a_row;
                    if (!first) first = e;
                    held.insert(batch.front().device_id);
                    kept.push_back(std::move(batch.front()));
                }
                batch.pop_front();
            }
            // A marker SET or a NOSCRIPT re-send wrote after ROLE: confirm_replicated asks again.
            role = counters_.round_trips == round_trips ? std::move(replies.back()) : nullptr;
        }
        if (!sent.empty()) confirm_replicated(redis, role.get());
    } catch (...) {
        put_back(true);
        throw;
    }
    put_back(false);
    if (first) throw *first;
}

void job_producer::confirm_replicated(redis_connection& redis, const redisReply* role) {
    // A master acknowledges a write before any replica has it; if Sentinel promotes a replica
    // that never got it, the job is gone (https://redis.io/docs/management/replication/). One
    // WAIT per batch; below the command timeout, or the socket would time out first.
    const auto timeout = std::min(opts_.replication_timeout, opts_.redis.command_timeout / 2);
    // The INCR: a re-sent batch that the script answers "known" writes nothing, and WAIT on a
    // connection without writes confirms at once, though the first write may not have reached
    // the replica.
    long long replicas = 0;
    if (role) {
        replicas = redis.expect_master(role);  // throws unless "master", as wait_replicated does
    } else {
        ++counters_.round_trips;
        replicas = redis.expect_master();
    }
    if (replicas > 0) ++counters_.round_trips;
    const replication_status r =
        wait_replicated_after_role(redis, replicas, timeout, opts_.model.jobs_replicated());
    // No replica listed (a single Redis, or a Sentinel master whose replicas are gone): there
    // is none to promote that could miss the batch, and holding every job until one comes
    // back would stall delivery for as long as the cluster runs degraded. A replica cut off
    // from the master is the one gap left: Redis's min-replicas-to-write closes it.
    if (r.replicas == 0 || r.acknowledged > 0) return;
    ++counters_.unreplicated;
    throw redis_io_error("no replica confirmed the batch within " +
                         std::to_string(timeout.count()) + " ms (" + std::to_string(r.replicas) +
                         " replicas listed); the batch is kept and sent again");
}

std::size_t job_producer::count_journal_lines() {
    std::ifstream in(opts_.journal_file);
    std::size_t n = 0;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty()) ++n;
    }
    return n;
}

void job_producer::deliver_journal(redis_connection& redis, std::unordered_set<std::string>& held) {
    if (counters_.journaled == 0) return;
    std::deque<device_certificate> jobs;
    bool malformed = false;
    {
        std::ifstream in(opts_.journal_file);
        std::string line;
        for (std::size_t number = 1; std::getline(in, line); ++number) {
            if (line.empty()) continue;
            try {
                jobs.push_back(parse_journal_line(line));
            } catch (const std::invalid_argument& e) {
                ++counters_.rejected;
                malformed = true;
                log_.error("devicegate: malformed line " + std::to_string(number) + " in " + opts_.journal_file +
                           ": " + e.what() + "; skipped");
            }
        }
    }
    // Counted once: the journal is read again on every pass while Redis refuses its jobs, and
    // each count moves the job generation on (every device's reconnect would submit again).
    if (malformed) rewrite_journal(jobs);
    const std::size_t total = jobs.size();
    // A journal that cannot be rewritten still holds the jobs delivered from it, which go
    // again on the next pass: each device's newer jobs wait until then, or the old job would
    // arrive after them (and the script would take it for a certificate change).
    std::vector<std::string> devices;
    for (const auto& cert : jobs) devices.push_back(cert.device_id);
    auto hold_all = [&] { held.insert(devices.begin(), devices.end()); };
    try {
        deliver_all(redis, jobs, held);
    } catch (...) {
        // The devices whose journaled jobs are left (refused, or not tried after too many
        // refusals in a row) hold back their newer jobs in the buffer: an older job must not
        // arrive after a newer one (the script would take it for a certificate change).
        for (const auto& cert : jobs) held.insert(cert.device_id);
        // Keep what was not retired (a delivered job may repeat: the script is idempotent).
        // Nothing retired (Redis refuses everything): the file already says so.
        if (jobs.size() != total && !rewrite_journal(jobs)) hold_all();
        throw;
    }
    // Delivered: the journal goes (emptied when it cannot be removed).
    if (::unlink(opts_.journal_file.c_str()) != 0 && errno != ENOENT && !rewrite_journal({})) {
        hold_all();
        return;
    }
    log_.notice("devicegate: delivered " + std::to_string(total) + " journaled first-connect jobs");
    counters_.journaled = 0;
}

bool job_producer::rewrite_journal(const std::deque<device_certificate>& jobs) {
    std::string records;
    for (const auto& cert : jobs) records += encode_journal_line(cert) + '\n';
    // Renamed over the journal only once written and fsynced: on an error the old one stays.
    const std::string error = write_atomically(opts_.journal_file, records);
    if (!error.empty()) {
        note_journal_failure(error + " (the journal keeps the jobs delivered from it: they go again, "
                                     "answered as known)");
        return false;
    }
    note_journal_written();
    counters_.journaled = jobs.size();
    return true;
}

namespace {

/// Whether the journal open on `fd` ends inside a record (a crash mid-append, or a failed
/// cut-back): appended records then start on a line of their own, so the torn one is skipped
/// alone as malformed instead of swallowing the next.
bool torn_tail(int fd, std::uint64_t size) {
    char last = '\n';
    return size > 0 && ::pread(fd, &last, 1, static_cast<off_t>(size - 1)) == 1 && last != '\n';
}

/// Appends `records` (O_APPEND) and fsyncs; on an error cuts the file back to `size`, so no
/// torn record is left behind. 0 or the errno.
int append_durably(int fd, std::uint64_t size, std::string_view records) {
    int err = write_all(fd, records);
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    if (err != 0 && ::ftruncate(fd, static_cast<off_t>(size)) == 0) ::fsync(fd);
    return err;
}

/// "devices=a,b,..." lines for the log: mosquitto cuts a line at its format's length plus 500
/// bytes (log__vprintf in src/logging.c), so each stays near 400. At most `max_lines`; the
/// last one then says how many devices it left out.
std::vector<std::string> device_lines(const std::deque<device_certificate>& jobs, std::size_t max_lines) {
    std::vector<std::string> lines;
    std::string line;
    std::size_t listed = 0;
    for (const auto& job : jobs) {
        if (line.size() > 400) {
            if (lines.size() + 1 == max_lines) break;
            lines.push_back(std::move(line));
            line.clear();
        }
        line += (line.empty() ? "devices=" : ",") + log_safe(job.device_id, 64);
        ++listed;
    }
    if (listed < jobs.size()) line += " and " + std::to_string(jobs.size() - listed) + " more";
    if (!line.empty()) lines.push_back(std::move(line));
    return lines;
}

}  // namespace

void job_producer::spill_to_journal(std::size_t keep_in_memory) {
    if (buffer_.size() <= keep_in_memory || opts_.journal_file.empty()) return;
    // O_RDWR: torn_tail reads the last byte.
    const int fd = ::open(opts_.journal_file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        note_journal_failure("cannot open the jobs journal " + opts_.journal_file + ": " + std::strerror(errno));
        return;
    }
    struct stat st {};
    int err = ::fstat(fd, &st) == 0 ? 0 : errno;
    auto size = static_cast<std::uint64_t>(st.st_size);
    bool torn = err == 0 && torn_tail(fd, size);
    // A journal just created is durable only with its directory entry (else a power loss
    // loses the file with the jobs fsynced into it).
    if (err == 0 && size == 0) err = fsync_parent_directory(opts_.journal_file);
    // In chunks: a journal that keeps failing costs one chunk's encoding per pass, not the
    // whole backlog's.
    while (err == 0 && buffer_.size() > keep_in_memory) {
        const std::size_t count = std::min(buffer_.size() - keep_in_memory, max_spilled_jobs);
        std::string records = torn ? "\n" : "";
        std::size_t fit = 0;
        for (; fit < count; ++fit) {
            std::string line = encode_journal_line(buffer_[fit]) + "\n";
            if (size + records.size() + line.size() > opts_.journal_max_bytes) break;
            records += line;
        }
        if (fit == 0) {
            drop_newest(buffer_.size() - keep_in_memory);
            break;
        }
        err = append_durably(fd, size, records);
        if (err != 0) break;
        size += records.size();
        torn = false;
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(fit));
        counters_.journaled += fit;
        note_journal_written();
    }
    ::close(fd);
    // The jobs not written stay in memory, beyond memory_limit: the next pass tries again.
    if (err != 0) {
        note_journal_failure("writing the jobs journal " + opts_.journal_file + " failed: " + std::strerror(err));
    }
}

void job_producer::drop_newest(std::size_t n) {
    std::deque<device_certificate> dropped;
    for (; n > 0; --n) {
        dropped.push_front(std::move(buffer_.back()));
        buffer_.pop_back();
    }
    counters_.overflow += dropped.size();  // moves generation(): the devices' next connects submit again
    log_.error("devicegate: jobs journal " + opts_.journal_file + " is full (" +
               std::to_string(opts_.journal_max_bytes) + " bytes): dropped " + std::to_string(dropped.size()) +
               " first-connect jobs (counted in $SYS jobs/overflow); each device is enqueued again when it next "
               "connects: " + device_lines(dropped, 1).front());
}

void job_producer::log_lost_at_stop() {
    counters_.lost += buffer_.size();
    log_.error("devicegate: stopping with " + std::to_string(buffer_.size()) +
               " undelivered first-connect jobs that no journal holds (" +
               (journal_error_.empty() ? "no jobs journal" : journal_error_) +
               "): they are LOST; each device is enqueued again when it next connects; the devices:");
    for (const auto& line : device_lines(buffer_, 1000)) log_.error("devicegate: lost first-connect jobs: " + line);
    buffer_.clear();
}

void job_producer::note_journal_failure(const std::string& cause) {
    ++counters_.journal_failures;
    const auto now = std::chrono::steady_clock::now();
    // A new cause at once; the same one again once a minute (the thread retries every 2 s).
    if (cause != journal_error_ || now - journal_error_logged_ >= std::chrono::minutes(1)) {
        journal_error_logged_ = now;
        log_.error("devicegate: " + cause + "; " + std::to_string(buffer_.size()) +
                   " first-connect jobs stay in memory (job_memory_limit " + std::to_string(opts_.memory_limit) +
                   ") and the journal is tried again (counted in $SYS jobs/journal_write_failures)");
    }
    journal_error_ = cause;
}

void job_producer::note_journal_written() {
    if (journal_error_.empty()) return;
    log_.notice("devicegate: the jobs journal " + opts_.journal_file + " is written again (" +
                std::to_string(counters_.journal_failures.load()) + " failed writes so far)");
    journal_error_.clear();
}

}  // namespace devicegate
