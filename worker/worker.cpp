#include "worker.hpp"

#include "devicegate/fleet_model.hpp"
#include "devicegate/job_verifier.hpp"
#include "devicegate/pki.hpp"

#include <algorithm>
#include <ctime>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace devicegate::worker {

namespace {

std::string now_text() { return std::to_string(static_cast<long long>(std::time(nullptr))); }

std::size_t attempts_of(const stream_entry& e) {
    auto it = e.fields.find(job_field::attempts);
    if (it == e.fields.end()) return 0;
    try {
        return static_cast<std::size_t>(std::stoul(it->second));
    } catch (const std::exception&) {
        return 0;
    }
}

std::string field(const std::map<std::string, std::string>& m, const char* name) {
    auto it = m.find(name);
    return it == m.end() ? std::string() : it->second;
}

/// The registration part of a device hash, as far as `state` holds it.
std::map<std::string, std::string> registration_fields(const std::map<std::string, std::string>& state) {
    std::map<std::string, std::string> out;
    for (const char* k : {device_field::thingsboard, device_field::thingsboard_id, device_field::thingsboard_fingerprint,
                          device_field::hawkbit, hawkbit_fingerprint_field}) {
        if (auto it = state.find(k); it != state.end()) out[k] = it->second;
    }
    return out;
}

}  // namespace

registration register_job(const job& j, std::map<std::string, std::string>& state, thingsboard_client& thingsboard,
                          hawkbit_client& hawkbit) {
    registration out;
    // A decommissioned device stays out of the targets even if it is unrevoked and connects
    // again: `devicegate-ctl reregister` clears the marker (docs/worker.md "Decommission").
    if (!field(state, device_field::decommissioned).empty()) {
        out.decommissioned = true;
        return out;
    }
    // The plugin writes the device's current fingerprint before it enqueues a job; a job for an
    // older certificate must not put that certificate back into ThingsBoard.
    const std::string current = field(state, device_field::fingerprint);
    if (!current.empty() && !same_fingerprint(current, j.cert.fingerprint_sha256)) {
        out.superseded = true;
        return out;
    }
    if (field(state, device_field::thingsboard) == registration_state::registered &&
        same_fingerprint(field(state, device_field::thingsboard_fingerprint), j.cert.fingerprint_sha256)) {
        out.thingsboard = "already";
    } else {
        auto r = thingsboard.register_device(j);
        out.thingsboard = r.action;
        out.notified = r.notified;
        out.assigned = r.assigned;
        state[device_field::thingsboard] = registration_state::registered;
        state[device_field::thingsboard_id] = r.device_uuid;
        state[device_field::thingsboard_fingerprint] = j.cert.fingerprint_sha256;
    }
    const bool registered = field(state, device_field::hawkbit) == registration_state::registered;
    if (registered && same_fingerprint(field(state, hawkbit_fingerprint_field), j.cert.fingerprint_sha256)) {
        out.hawkbit = "already";
    } else {
        std::vector<std::pair<std::string, std::string>> metadata;
        try {
            metadata = hawkbit_metadata(j);
        } catch (const std::invalid_argument& e) {
            throw target_failure(target::hawkbit, false, 0, "", std::string("hawkbit: ") + e.what());
        }
        // Also for a renewal of a registered target (409: exists): it may have been deleted since.
        out.hawkbit = hawkbit.ensure_target(j.cert.device_id);
        // An existing target may be one a keep-mode decommission tagged (then `reregister`).
        if (out.hawkbit == "exists" && hawkbit.drop_revoked_tag(j.cert.device_id)) out.hawkbit = "exists_untagged";
        hawkbit.write_metadata(j.cert.device_id, metadata);
        state[device_field::hawkbit] = registration_state::registered;
        state[hawkbit_fingerprint_field] = j.cert.fingerprint_sha256;
    }
    return out;
}

decommissioning decommission_job(const job& j, std::map<std::string, std::string>& state,
                                 thingsboard_client& thingsboard, hawkbit_client& hawkbit, decommission_mode mode) {
    decommissioning out;
    const std::string& id = j.cert.device_id;
    const bool keep = mode == decommission_mode::keep;
    if (field(state, device_field::thingsboard) == registration_state::decommissioned) {
        out.thingsboard = "already";
    } else {
        const std::int64_t at = j.requested_at > 0 ? j.requested_at : static_cast<std::int64_t>(std::time(nullptr));
        out.thingsboard = keep ? thingsboard.revoke_device(id, j.reason, at) : thingsboard.delete_device(id);
        state[device_field::thingsboard] = registration_state::decommissioned;
        // Kept: ThingsBoard still holds the device (its id stays), no longer this certificate.
        if (!keep || out.thingsboard == "absent") state[device_field::thingsboard_id] = "";
        state[device_field::thingsboard_fingerprint] = "";
    }
    if (field(state, device_field::hawkbit) == registration_state::decommissioned) {
        out.hawkbit = "already";
    } else {
        out.hawkbit = keep ? hawkbit.revoke_target(id) : hawkbit.delete_target(id);
        state[device_field::hawkbit] = registration_state::decommissioned;
        state[hawkbit_fingerprint_field] = "";
    }
    return out;
}

registration_worker::registration_worker(const worker_config& config, worker_metrics& metrics, const logger& log)
    : config_(config), metrics_(metrics), log_(log),
      thingsboard_gate_(target::thingsboard, config.auth_retry_initial, config.auth_retry_max, metrics,
                        [this](bool paused, const std::string& why) { auth_transition(target::thingsboard, paused, why); }),
      hawkbit_gate_(target::hawkbit, config.auth_retry_initial, config.auth_retry_max, metrics,
                    [this](bool paused, const std::string& why) { auth_transition(target::hawkbit, paused, why); }),
      session_(config.thingsboard, config.http_timeout, metrics, thingsboard_gate_),
      thingsboard_setup_(target::thingsboard, config.auth_retry_initial, config.auth_retry_max, metrics,
                         [this](bool paused, const std::string& why) { setup_transition(target::thingsboard, paused, why); }),
      hawkbit_setup_(target::hawkbit, config.auth_retry_initial, config.auth_retry_max, metrics,
                     [this](bool paused, const std::string& why) { setup_transition(target::hawkbit, paused, why); }) {}

void registration_worker::setup_transition(target t, bool paused, const std::string& why) {
    if (paused) {
        log_.error("devicegate-worker: " + why + " (checked again every " +
                   std::to_string(config_.auth_retry_initial.count()) + " ms, doubling up to " +
                   std::to_string(config_.auth_retry_max.count()) + " ms; jobs wait in the stream)");
    } else {
        log_.notice("devicegate-worker: " + std::string(to_string(t)) +
                    " has the configured names now; registrations resumed");
    }
}

void registration_worker::auth_transition(target t, bool paused, const std::string& why) {
    if (paused) {
        log_.error("devicegate-worker: " + std::string(to_string(t)) + " refused the login: " + why +
                   "; consumption paused, one login every " + std::to_string(config_.auth_retry_initial.count()) +
                   " ms (doubling up to " + std::to_string(config_.auth_retry_max.count()) +
                   " ms); jobs wait in the stream");
    } else {
        log_.notice("devicegate-worker: " + std::string(to_string(t)) + " accepted the login again; consumption resumed");
    }
}

std::chrono::milliseconds registration_worker::auth_pause() const {
    return std::max({thingsboard_gate_.remaining(), hawkbit_gate_.remaining(), thingsboard_setup_.gate().remaining(),
                     hawkbit_setup_.gate().remaining()});
}

bool registration_worker::wait_while_paused(job_run& run) {
    --run.attempts;  // the target never looked at the job: not an attempt
    const auto delay = std::max(auth_pause(), std::chrono::milliseconds(50));
    if (wait_for_retry(run.queue, run.entry.id, delay)) return true;
    run.queue.requeue(run.entry, run.attempts);
    ++metrics_.jobs_requeued;
    return false;
}

void registration_worker::run() {
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < config_.concurrency; ++i) threads.emplace_back([this, i] { consume(i); });
    threads.emplace_back([this] { heartbeat(); });
    for (auto& t : threads) t.join();
}

void registration_worker::heartbeat() {
    const redis_model model{config_.redis_prefix};
    std::unique_ptr<redis_connection> redis;
    std::string refused;  // the error reply last logged ("" while beats are written)
    while (!stopping_) {
        try {
            if (!redis) redis = std::make_unique<redis_connection>(config_.redis);
            expect_ok(redis->command({"HSET", model.workers(), config_.consumer_name, std::to_string(unix_ms_now())}).get(),
                      "HSET " + model.workers());
            refused.clear();
        } catch (const redis_data_error& e) {
            // An error reply (e.g. NOPERM: an ACL from before the heartbeat, without
            // ~<p>workers): the worker works, but devicegate-ctl workers would call it silent.
            if (refused != e.what()) {
                refused = e.what();
                log_.error("devicegate-worker: heartbeat refused by Redis: " + refused +
                           " (devicegate-ctl workers will not list this worker; the ACL user needs ~" + model.workers() +
                           " with HSET and HDEL, config/redis-users.acl.example)");
            }
        } catch (const std::exception&) {
            redis.reset();  // the consumers log the link's state; try again at the next beat
        }
        sleep(worker_heartbeat_interval);
    }
    try {  // a clean stop: no longer listed (a worker killed keeps its last beat)
        if (!redis) redis = std::make_unique<redis_connection>(config_.redis);
        redis->command({"HDEL", model.workers(), config_.consumer_name});
    } catch (const std::exception&) {
    }
}

void registration_worker::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
}

bool registration_worker::sleep(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex_);
    return !wake_.wait_for(lock, d, [this] { return stopping_.load(); });
}

std::chrono::milliseconds registration_worker::backoff(std::size_t attempt) const {
    // Exponential with "equal jitter": half fixed, half random, so retries of a burst spread out.
    auto delay = config_.retry_initial;
    for (std::size_t i = 1; i < attempt && delay < config_.retry_max; ++i) delay *= 2;
    delay = std::min(delay, config_.retry_max);
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uniform_int_distribution<long long> jitter(0, delay.count() / 2);
    return std::chrono::milliseconds(delay.count() - delay.count() / 2 + jitter(rng));
}

void registration_worker::redis_state(bool up, const std::string& why) {
    int expected = up ? 0 : 1;
    if (metrics_.redis_up.compare_exchange_strong(expected, up ? 1 : 0)) {
        if (up) log_.notice("devicegate-worker: Redis at " + config_.redis.describe() + " connected");
        else log_.warning("devicegate-worker: Redis at " + config_.redis.describe() + " unreachable: " + why +
                          "; jobs wait in the stream, retrying");
    }
}

void registration_worker::consume(std::size_t index) {
    const std::string consumer = config_.consumer_name + "-" + std::to_string(index);
    std::chrono::milliseconds reconnect{200};
    while (!stopping_) {
        try {
            job_queue queue(config_.redis, redis_model{config_.redis_prefix}, config_.consumer_group, consumer);
            queue.ensure_group();
            queue.set_dead_letter_max(config_.dead_letter_max);
            redis_state(true, "");
            reconnect = std::chrono::milliseconds(200);
            thingsboard_client thingsboard(config_.thingsboard, config_.http_timeout, session_, metrics_, thingsboard_setup_);
            hawkbit_client hawkbit(config_.hawkbit, config_.http_timeout, metrics_, hawkbit_gate_, hawkbit_setup_);
            // Jobs this consumer took before a restart (or a lost Redis link) come first.
            for (const auto& e : queue.own_pending(1000)) process(queue, thingsboard, hawkbit, e, origin::own_pending);
            // Consumers claim idle jobs at staggered times.
            auto next_claim = std::chrono::steady_clock::now() + config_.claim_idle * index / config_.concurrency / 2;
            while (!stopping_) {
                // A refused login pauses consumption: no new job while a probe is not due
                // (the threads holding a job probe; see login_gate).
                if (const auto pause = auth_pause(); pause.count() > 0) {
                    sleep(std::min(pause, std::chrono::milliseconds(1000)));
                    continue;
                }
                if (std::chrono::steady_clock::now() >= next_claim) {
                    for (const auto& e : queue.claim_idle(config_.claim_idle, 10)) process(queue, thingsboard, hawkbit, e, origin::reclaimed);
                    next_claim = std::chrono::steady_clock::now() + std::max(config_.claim_idle / 2, std::chrono::milliseconds(200));
                }
                for (const auto& e : queue.read_new(1, std::chrono::milliseconds(1000))) {
                    process(queue, thingsboard, hawkbit, e, origin::fresh);
                }
            }
        } catch (const redis_io_error& e) {
            redis_state(false, e.what());
        } catch (const redis_data_error& e) {
            log_.error("devicegate-worker: unexpected data in Redis: " + std::string(e.what()) + "; reconnecting");
        }
        sleep(reconnect);
        reconnect = std::min(reconnect * 2, std::chrono::milliseconds(5000));
    }
}

void registration_worker::process(job_queue& queue, thingsboard_client& thingsboard, hawkbit_client& hawkbit,
                                  const stream_entry& entry, origin from) {
    struct in_flight_guard {
        std::atomic<std::int64_t>& n;
        explicit in_flight_guard(std::atomic<std::int64_t>& c) : n(c) { ++n; }
        ~in_flight_guard() { --n; }
    } guard(metrics_.in_flight);
    job_run run{queue, entry, attempts_of(entry), std::chrono::steady_clock::now()};
    if (stopping_) {  // taken from the stream but not started: hand it back at once
        queue.requeue(entry, run.attempts);
        ++metrics_.jobs_requeued;
        return;
    }
    if (entry.fields.empty()) {  // pending, but deleted from the stream meanwhile
        queue.done(entry.id, "", {});
        return;
    }
    if (from != origin::fresh && delivered_too_often(run, from)) return;
    job j;
    try {
        auto payload = entry.fields.find(job_field::job);
        if (payload == entry.fields.end()) throw std::invalid_argument("no \"job\" field");
        j = parse_job(payload->second);
    } catch (const std::invalid_argument& e) {
        dead_letter(run, dead_reason::malformed, std::string("malformed job: ") + e.what(), "", {}, {});
        return;
    }
    // Before any backend call, and before the device's hash is read or written: the device id
    // is only a claim until the certificate proves it.
    if (j.type == job_type::decommission ? !revoked(run, j) : !trusted(run, j)) return;
    std::map<std::string, std::string> state;
    try {
        state = queue.device(j.cert.device_id);
    } catch (const redis_data_error& e) {
        // Something else wrote the device's key (WRONGTYPE): this job fails the same way on
        // every delivery. Dead-letter it with the cause, without writing that key, instead of
        // reconnecting until it counts as poison; the other jobs go on.
        dead_letter(run, dead_reason::permanent,
                    std::string("unexpected data in Redis: ") + e.what() +
                        " (fix or delete that key, then devicegate-ctl dlq replay)",
                    "", {{job_field::device_id, j.cert.device_id}}, {});
        return;
    }
    for (;;) {
        ++run.attempts;
        try {
            if (attempt(run, j, state, thingsboard, hawkbit)) return;
        } catch (const target_failure& f) {
            if (f.paused ? !wait_while_paused(run) : !retry_after(run, j, f, state)) return;
        }
    }
}

bool registration_worker::attempt(job_run& run, const job& j, std::map<std::string, std::string>& state,
                                  thingsboard_client& thingsboard, hawkbit_client& hawkbit) {
    if (j.type == job_type::decommission) {
        finish_decommission(run, j, decommission_job(j, state, thingsboard, hawkbit, config_.decommission), state);
    } else {
        finish(run, j, register_job(j, state, thingsboard, hawkbit), state);
    }
    return true;
}

bool registration_worker::revoked(job_run& run, const job& j) {
    // A revoked device's certificate may be expired, re-issued or unknown, so the worker does
    // not verify one; the job is only acted on while the operator's revocation stands (the
    // deny-list is written by devicegate-ctl and the bridge, as the job is).
    auto serial = normalize_serial_hex(j.cert.serial_hex);
    if (run.queue.revoked(j.cert.device_id, serial ? *serial : std::string())) return true;
    dead_letter(run, dead_reason::not_revoked,
                "decommission of device " + j.cert.device_id + " refused: it is not on the deny-list "
                "(revoke it first: devicegate-ctl revoke " + j.cert.device_id + " --decommission)",
                j.cert.device_id, {}, {});
    return false;
}

void registration_worker::finish_decommission(job_run& run, const job& j, const decommissioning& d,
                                              const std::map<std::string, std::string>& state) {
    const std::string& id = j.cert.device_id;
    auto fields = registration_fields(state);
    fields[device_field::decommissioned] = now_text();
    fields[device_field::registered_at] = "";
    fields[device_field::last_error] = "";
    run.queue.done(run.entry.id, id, fields);
    ++metrics_.jobs_decommissioned;
    log_.notice("devicegate-worker: decommissioned device=" + id + " job=" + run.entry.id + " mode=" +
                (config_.decommission == decommission_mode::keep ? "keep" : "delete") + " thingsboard=" + d.thingsboard + " hawkbit=" + d.hawkbit + " reason=\"" + log_safe(j.reason) +
                "\" attempts=" + std::to_string(run.attempts));
}

bool registration_worker::trusted(job_run& run, const job& j) {
    const auto v = verify_job_certificate(*config_.trust, j, std::time(nullptr), config_.clock_skew);
    if (v.why == reason::ok) return true;
    dead_letter(run, dead_reason::untrusted,
                "untrusted certificate (" + std::string(to_string(v.why)) + ") in the job claiming device " +
                    j.cert.device_id + ": " + v.detail,
                "", {{"claimed_device_id", j.cert.device_id}}, {});
    return false;
}

bool registration_worker::delivered_too_often(job_run& run, origin from) {
    const long long deliveries = run.queue.deliveries(run.entry.id);
    if (from == origin::reclaimed) {
        ++metrics_.jobs_reclaimed;
        log_.notice("devicegate-worker: claimed job=" + run.entry.id + " idle for " +
                    std::to_string(config_.claim_idle.count()) + " ms (its worker stopped), delivery " +
                    std::to_string(deliveries));
    }
    if (deliveries <= static_cast<long long>(config_.max_deliveries)) return false;
    dead_letter(run, dead_reason::poison,
                "delivered " + std::to_string(deliveries) +
                    " times without finishing (workers died or were killed while processing it)",
                "", {}, {});
    return true;
}

void registration_worker::dead_letter(job_run& run, dead_reason reason, const std::string& error,
                                      const std::string& device_id, std::map<std::string, std::string> info,
                                      const std::map<std::string, std::string>& state) {
    info[job_field::reason] = to_string(reason);
    info[job_field::error] = error;
    info[job_field::attempts] = std::to_string(run.attempts);
    info[job_field::failed_at] = now_text();
    info[job_field::worker] = config_.consumer_name;
    if (!device_id.empty()) info[job_field::device_id] = device_id;
    const std::string dead_id = run.queue.dead_letter(run.entry, info, device_id, state);
    metrics_.dead(reason);
    log_.warning("devicegate-worker: dead-lettered job=" + run.entry.id + " as " + dead_id + " device=" +
                 (device_id.empty() ? "-" : device_id) + " reason=" + to_string(reason) + " attempts=" +
                 std::to_string(run.attempts) + ": " + error + " (devicegate-ctl dlq replay " + dead_id + ")");
}

void registration_worker::finish(job_run& run, const job& j, const registration& r,
                                 const std::map<std::string, std::string>& state) {
    const std::string& id = j.cert.device_id;
    if (r.decommissioned) {
        run.queue.done(run.entry.id, "", {});
        log_.notice("devicegate-worker: skipped job=" + run.entry.id + " device=" + id +
                    ": the device was decommissioned; devicegate-ctl reregister " + id + " brings it back");
        return;
    }
    if (r.superseded) {
        run.queue.done(run.entry.id, "", {});
        ++metrics_.jobs_superseded;
        log_.info("devicegate-worker: skipped job=" + run.entry.id + " device=" + id +
                  ": superseded by a newer certificate (its own job registers it)");
        return;
    }
    auto fields = registration_fields(state);
    fields[device_field::registered_at] = now_text();
    fields[device_field::last_error] = "";
    // Public data; lets `devicegate-ctl reregister` enqueue the device again without a reconnect
    // (the broker plans a job once per certificate and run: gate::plan_job).
    fields[device_field::certificate] = j.cert.certificate_pem;
    run.queue.done(run.entry.id, id, fields);
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - run.started);
    ++metrics_.jobs_done;
    metrics_.observe_registration(took);
    if (r.notified == "unsupported" && !rule_engine_warned_.exchange(true)) {
        log_.warning("devicegate-worker: ThingsBoard has no Rule Engine REST API (JSON 404: older than 3.8); "
                     "registrations continue with the server-scope attributes only (counted in "
                     "devicegate_worker_rule_engine_unsupported_total; set thingsboard_rule_engine off)");
    }
    if (r.notified == "queued" && !rule_engine_unanswered_warned_.exchange(true)) {
        log_.warning("devicegate-worker: the Rule Engine answered 408: no \"rest call reply\" node in the rule chain, "
                     "so every registration waits thingsboard_rule_engine_timeout; add the node "
                     "(docs/integrations.md) or set thingsboard_rule_engine off");
    }
    log_.info("devicegate-worker: registered device=" + id + " job=" + run.entry.id + " type=" +
              std::string(to_string(j.type)) + " thingsboard=" + r.thingsboard +
              (r.notified.empty() ? "" : " notified=" + r.notified) + (r.assigned ? " customer=assigned" : "") +
              " hawkbit=" + r.hawkbit +
              " attempts=" + std::to_string(run.attempts) + " in " + std::to_string(took.count() / 1000) + " ms");
}

bool registration_worker::retry_after(job_run& run, const job& j, const target_failure& f,
                                      const std::map<std::string, std::string>& state) {
    ++metrics_.attempts_failed;
    const std::string& id = j.cert.device_id;
    // What succeeded before the failure is recorded too, so a replay skips it.
    auto progress = registration_fields(state);
    progress[device_field::last_error] = f.what();
    const char* which = f.which == target::thingsboard ? device_field::thingsboard : device_field::hawkbit;
    if (!f.retryable || run.attempts >= config_.max_attempts) {
        progress[which] = registration_state::failed;
        const dead_reason why = f.quota ? dead_reason::quota : f.retryable ? dead_reason::exhausted : dead_reason::permanent;
        dead_letter(run, why, f.what(), id,
                    {{job_field::target, to_string(f.which)},
                     {job_field::status, std::to_string(f.status)},
                     {job_field::body, f.body_excerpt}},
                    progress);
        return false;
    }
    progress[which] = registration_state::retrying;
    run.queue.update_device(id, progress);
    // A Retry-After (capped by retry_max: the server does not get to stall the worker) is a floor.
    const auto delay = std::max(backoff(run.attempts), std::min(f.retry_after, config_.retry_max));
    ++metrics_.jobs_retried;
    log_.notice("devicegate-worker: retry device=" + id + " job=" + run.entry.id + " attempt " +
                std::to_string(run.attempts + 1) + "/" + std::to_string(config_.max_attempts) + " in " +
                std::to_string(delay.count()) + " ms: " + f.what());
    if (wait_for_retry(run.queue, run.entry.id, delay)) return true;
    run.queue.requeue(run.entry, run.attempts);
    ++metrics_.jobs_requeued;
    log_.notice("devicegate-worker: stopping: job=" + run.entry.id + " device=" + id +
                " handed back to the stream after " + std::to_string(run.attempts) + " attempt(s)");
    return false;
}

bool registration_worker::wait_for_retry(job_queue& queue, const std::string& id, std::chrono::milliseconds delay) {
    const auto slice = std::max(config_.claim_idle / 3, std::chrono::milliseconds(1));
    while (delay.count() > 0) {
        const auto step = std::min(delay, slice);
        if (!sleep(step)) return false;
        delay -= step;
        queue.touch(id);
    }
    return true;
}

}  // namespace devicegate::worker
