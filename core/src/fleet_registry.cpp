#include "devicegate/fleet_registry.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>
#include <unordered_set>

#ifndef DEVICEGATE_VERSION
#define DEVICEGATE_VERSION "unknown"
#endif

namespace devicegate {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;
using command_list = std::vector<std::vector<std::string>>;

// A deny-list change naming more than this is a resync, not one operator's revoke: no acks.
constexpr std::size_t max_ack_entries = 16;
// Devices per HMGET and per HSET when the whole registry is written or checked.
constexpr std::size_t chunk = 1000;
// A broker's kick list: at most this many kicks, kept this long after the last push.
constexpr long long max_queued_kicks = 10000;
constexpr long long kick_ttl_ms = 60'000;
// How long dg-fleet lets events gather after writing a batch: a takeover kick is pushed at most
// this much later (the receiving broker's 100 ms tick performs it); fewer round trips and
// wake-ups per connect (issue 13: 10 ms cost ~0.03 ms of broker CPU per connect at 800/s).
constexpr milliseconds batch_linger{25};
// Room reserved for the next batch's events is at most this many.
constexpr std::size_t max_reserved_events = 4096;

std::string random_run_id() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    return buf;
}

std::string host_name() {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    return host;
}

/// Runs `connected` (one connected period; it returns only when stopping) again after every
/// link failure, waiting 100 ms doubling to 5 s (100 ms again after a period that lasted);
/// `failed` gets the cause, `waiting` runs on every wake-up while waiting.
void run_linked(background_loop& loop, const std::function<void()>& connected,
                const std::function<void(const std::string&)>& failed, const std::function<void()>& waiting) {
    milliseconds backoff{100};
    while (!loop.stopping()) {
        const auto began = steady_clock::now();
        try {
            connected();
            return;
        } catch (const redis_io_error& e) {
            failed(e.what());
        } catch (const redis_data_error& e) {
            failed(std::string("bad data from Redis: ") + e.what());
        } catch (const std::exception& e) {
            failed(std::string("unexpected error: ") + e.what());
        }
        if (steady_clock::now() - began > std::chrono::seconds(5)) backoff = milliseconds(100);
        for (auto until = steady_clock::now() + backoff; steady_clock::now() < until;) {
            if (!loop.wait_until(until)) return;
            waiting();
        }
        backoff = std::min(backoff * 2, milliseconds(5000));
    }
}

void expect_all_ok(const std::vector<redis_reply_ptr>& replies, const command_list& commands) {
    for (std::size_t i = 0; i < replies.size(); ++i) expect_ok(replies[i].get(), commands[i][0]);
}

}  // namespace

std::string serial_key_hex(const serial_key& key) {
    const std::size_t len = key.bytes[0];
    if (len > 20) return "";
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string hex = len == 0 ? "00" : "";
    for (std::size_t i = 1; i <= len; ++i) {
        hex += digits[key.bytes[i] >> 4];
        hex += digits[key.bytes[i] & 0x0F];
    }
    return normalize_serial_hex(hex).value_or("");
}

fleet_registry::fleet_registry(options opts, logger log, extras_fn extras)
    : opts_(std::move(opts)),
      log_(std::move(log)),
      extras_(std::move(extras)),
      run_id_(random_run_id()),
      started_at_(unix_ms_now()) {}

fleet_registry::~fleet_registry() { stop(); }

void fleet_registry::start() {
    loop_.start();
    receiver_.start();
}

void fleet_registry::stop() noexcept {
    receiver_.stop();
    loop_.stop();
}

// ---- broker thread

std::uint64_t fleet_registry::admitted(const std::string& device_id, const char* address,
                                       const sha256_digest& fingerprint, const serial_key& serial,
                                       std::string_view serial_hex) {
    const std::uint64_t seq = ++next_seq_;
    push({event_kind::admit, device_id,
          written_session{seq, unix_ms_now(), fingerprint, serial, serial_spelling(serial, serial_hex),
                          address != nullptr && *address != '\0' ? address : "-"}});
    return seq;
}

void fleet_registry::disconnected(const std::string& device_id, std::uint64_t seq) {
    if (seq == 0) return;  // never registered here
    written_session s;
    s.seq = seq;
    push({event_kind::remove, device_id, std::move(s)});
}

void fleet_registry::acknowledge(const std::vector<kick_request>& applied) {
    for (const auto& request : applied) {
        if (request.why != reason::revoked_denylist || request.everyone) continue;
        if (request.device_ids.size() + request.serials.size() > max_ack_entries) continue;
        for (const auto& id : request.device_ids) push({event_kind::ack, opts_.model.revoke_ack("device", id)});
        for (const auto& key : request.serials) {
            if (auto hex = serial_key_hex(key); !hex.empty()) {
                push({event_kind::ack, opts_.model.revoke_ack("serial", hex)});
            }
        }
    }
}

std::vector<std::pair<std::string, reason>> fleet_registry::take_kicks(const current_fn& current) {
    std::vector<pending_kick> pending;
    {
        std::lock_guard lock(mutex_);
        pending.swap(kicks_);
    }
    std::vector<std::pair<std::string, reason>> out;
    std::unordered_set<std::string> done;
    for (auto& k : pending) {
        // The session the request names must still be this broker's current one: a device that
        // bounced back here meanwhile has a new sid, and keeps its session.
        const std::uint64_t seq = current(k.device);
        if (seq == 0 || sid(seq) != k.sid || !done.insert(k.device).second) continue;
        if (k.why == reason::session_taken_over) ++takeovers_;
        log_.notice("devicegate: kick client=" + k.device + " reason=" + std::string(to_string(k.why)) + " " + k.detail);
        out.emplace_back(std::move(k.device), k.why);
    }
    return out;
}

void fleet_registry::append_stats(std::vector<std::pair<std::string, std::string>>& out) const {
    out.emplace_back("fleet/link", link_up() ? "up" : "down");
    out.emplace_back("fleet/link_down_events", std::to_string(link_downs_.load()));
    out.emplace_back("fleet/takeovers", std::to_string(takeovers()));
    out.emplace_back("fleet/clones", std::to_string(clones()));
    out.emplace_back("fleet/malformed", std::to_string(malformed()));
}

void fleet_registry::push(event e) {
    bool was_empty = false;
    {
        std::lock_guard lock(mutex_);
        was_empty = events_.empty();
        events_.push_back(std::move(e));
    }
    // Only the first event of a batch wakes dg-fleet: it takes them all (wake() is sticky,
    // so one that arrives while it is busy is not missed).
    if (was_empty) loop_.wake();
}

void fleet_registry::push_kick(pending_kick k) {
    std::lock_guard lock(mutex_);
    kicks_.push_back(std::move(k));
}

// ---- dg-fleet

std::vector<fleet_registry::event> fleet_registry::drain_events() {
    // The broker thread's next pushes go into room for as many as this batch had: no
    // reallocation (and moving of events) on that thread while a batch gathers.
    std::vector<event> out;
    out.reserve(std::min<std::size_t>(last_batch_, max_reserved_events));
    {
        std::lock_guard lock(mutex_);
        out.swap(events_);
    }
    last_batch_ = out.size();
    return out;
}

fleet_session fleet_registry::session_of(const written_session& w) const {
    return {sid(w.seq), w.connected_at, w.address, fingerprint_hex(w.fingerprint), w.serial_text.hex(w.serial)};
}

// A second session of a device on this broker: mosquitto ends the older connection itself
// (same client id); only a second source address is news.
void fleet_registry::note_local_clone(const std::string& device, const written_session& older,
                                      const written_session& newer) {
    if (same_source(older.address, newer.address)) return;
    ++clones_;
    const bool refuse = opts_.clones == clone_policy::refuse;
    log_.warning("devicegate: possible clone device=" + device + " broker=" + opts_.broker_id +
                 " address=" + log_safe(newer.address) + " other_broker=" + opts_.broker_id +
                 " other_address=" + log_safe(older.address) + " policy=" + (refuse ? "refuse" : "log"));
    if (refuse) {
        push_kick({device, sid(newer.seq), reason::clone_refused,
                   "broker=" + opts_.broker_id + " other_broker=" + opts_.broker_id +
                       " other_address=" + log_safe(older.address)});
    }
}

void fleet_registry::apply(std::vector<event>& events, command_list* changes, std::vector<std::string>* admitted) {
    // Per device touched: whether Redis held it before this batch; the end state is written_.
    std::unordered_map<std::string, bool> touched;
    for (auto& e : events) {
        if (e.what == event_kind::ack) {
            if (changes != nullptr) {
                changes->push_back({"SADD", e.device, opts_.broker_id});
                changes->push_back({"PEXPIRE", e.device, std::to_string(revoke_ack_ttl_ms)});
            }
            continue;
        }
        auto it = written_.find(e.device);
        touched.try_emplace(e.device, it != written_.end());
        if (e.what == event_kind::admit) {
            if (it != written_.end()) note_local_clone(e.device, it->second, e.session);
            written_[e.device] = std::move(e.session);
        } else if (it != written_.end() && it->second.seq == e.session.seq) {  // else a newer session replaced it
            written_.erase(it);
        }
    }
    online_ = written_.size();
    if (changes == nullptr) return;
    const std::string key = opts_.model.sessions(opts_.broker_id);
    std::vector<std::string> hset{"HSET", key}, hdel{"HDEL", key};
    for (const auto& [device, was_there] : touched) {
        if (auto it = written_.find(device); it != written_.end()) {
            hset.push_back(device);
            hset.push_back(encode_fleet_session(session_of(it->second)));
            if (admitted != nullptr) admitted->push_back(device);
        } else if (was_there) {
            hdel.push_back(device);
        }
    }
    if (hset.size() > 2) changes->push_back(std::move(hset));
    if (hdel.size() > 2) changes->push_back(std::move(hdel));
}

void fleet_registry::run(background_loop& loop) {
    run_linked(
        loop, [&] { link_session(loop); }, [&](const std::string& cause) { mark_down(cause); },
        [&] {  // keep the picture current for the rewrite after reconnecting
            auto events = drain_events();
            apply(events);
        });
}

void fleet_registry::mark_down(const std::string& cause) {
    if (link_up_.exchange(false) || !down_logged_) {
        ++link_downs_;
        log_.warning("devicegate: fleet registry link down (" + opts_.redis.describe() + "): " + log_safe(cause, 300) +
                     "; sessions are not registered fleet-wide until it is back");
        down_logged_ = true;
    }
}

void fleet_registry::link_session(background_loop& loop) {
    redis_connection redis(opts_.redis);
    auto pending = drain_events();
    apply(pending);
    write_all(redis);
    heartbeat(redis);
    link_up_ = true;
    down_logged_ = false;
    log_.notice("devicegate: fleet registry up (" + opts_.redis.describe() + "): broker=" + opts_.broker_id +
                " sessions=" + std::to_string(written_.size()));
    // Another broker may have admitted one of these devices while this link was down.
    std::vector<std::string> all;
    for (const auto& [device, s] : written_) all.push_back(device);
    check_conflicts(redis, all, live_brokers(redis, opts_.model, unix_ms_now()));

    auto next_heartbeat = steady_clock::now() + opts_.heartbeat_interval;
    while (!loop.stopping()) {
        auto events = drain_events();
        if (!events.empty()) {
            write_batch(redis, events);
            // Let the next events gather: at hundreds of connects per second one round trip
            // then carries many of them, where each event cost a wake-up, a write and a
            // blocking read of this thread (broker CPU, issue 13). A takeover waits for the
            // broker's 100 ms tick anyway.
            // A plain sleep: push() wakes the loop only for the first event of a batch, and a
            // stop waits at most this long.
            std::this_thread::sleep_for(batch_linger);
        }
        if (steady_clock::now() >= next_heartbeat) {
            heartbeat(redis);
            next_heartbeat = steady_clock::now() + opts_.heartbeat_interval;
        }
        loop.wait_until(next_heartbeat);  // a pushed event wakes it at once
    }
    sign_off(redis);
}

void fleet_registry::sign_off(redis_connection& redis) noexcept {
    // A clean stop: the sessions end with the broker, so nothing should point at it until
    // the timeout; it shows as dead at once. Best effort: a failure leaves it to the expiry.
    const auto now = std::to_string(unix_ms_now());
    try {
        redis.pipeline({{"DEL", opts_.model.sessions(opts_.broker_id)},
                        {"ZADD", opts_.model.brokers(), now, opts_.broker_id},
                        {"HSET", opts_.model.broker(opts_.broker_id), broker_field::sessions, "0"}});
    } catch (const std::exception&) {
    }
}

void fleet_registry::write_all(redis_connection& redis) {
    const std::string key = opts_.model.sessions(opts_.broker_id);
    command_list commands{{"DEL", key}};
    for (auto it = written_.begin(); it != written_.end();) {
        std::vector<std::string> hset{"HSET", key};
        for (std::size_t n = 0; n < chunk && it != written_.end(); ++n, ++it) {
            hset.push_back(it->first);
            hset.push_back(encode_fleet_session(session_of(it->second)));
        }
        commands.push_back(std::move(hset));
    }
    commands.push_back({"PEXPIRE", key, std::to_string(opts_.heartbeat_timeout.count())});
    redis.transaction(commands);
}

void fleet_registry::write_batch(redis_connection& redis, std::vector<event>& events) {
    const std::string key = opts_.model.sessions(opts_.broker_id);
    command_list commands;
    std::vector<std::string> admitted;
    apply(events, &commands, &admitted);
    commands.push_back({"PEXPIRE", key, std::to_string(opts_.heartbeat_timeout.count())});
    if (!admitted.empty()) commands.push_back({"ZRANGEBYSCORE", opts_.model.brokers(), "(" + std::to_string(unix_ms_now()), "+inf"});
    auto replies = redis.pipeline(commands);
    expect_all_ok(replies, commands);
    if (admitted.empty()) return;
    std::sort(admitted.begin(), admitted.end());
    check_conflicts(redis, admitted, reply_strings(replies.back().get(), opts_.model.brokers()));
}

void fleet_registry::check_conflicts(redis_connection& redis, const std::vector<std::string>& devices,
                                     const std::vector<std::string>& live) {
    std::vector<std::string> others;
    for (const auto& b : live) {
        if (b != opts_.broker_id) others.push_back(b);
    }
    for (std::size_t first = 0; first < devices.size() && !others.empty(); first += chunk) {
        const std::size_t last = std::min(devices.size(), first + chunk);
        command_list reads;
        for (const auto& b : others) {
            reads.push_back({"HMGET", opts_.model.sessions(b)});
            reads.back().insert(reads.back().end(), devices.begin() + first, devices.begin() + last);
        }
        auto replies = redis.pipeline(reads);
        command_list pushes;
        for (std::size_t b = 0; b < others.size(); ++b) {
            auto values = reply_array(replies[b].get(), reads[b][1], last - first);
            for (std::size_t i = 0; i < values.size(); ++i) {
                auto value = reply_optional_string(values[i], reads[b][1]);
                auto mine = written_.find(devices[first + i]);
                if (!value || mine == written_.end()) continue;  // not there, or already gone here
                try {
                    handle_conflict(pushes, mine->first, session_of(mine->second), others[b],
                                    parse_fleet_session(*value));
                } catch (const std::invalid_argument& e) {
                    ++malformed_;
                    log_.warning("devicegate: malformed session entry in " + reads[b][1] + " for device=" +
                                 mine->first + ": " + e.what());
                }
            }
        }
        if (!pushes.empty()) expect_all_ok(redis.pipeline(pushes), pushes);
    }
}

void fleet_registry::handle_conflict(command_list& pushes, const std::string& device, const fleet_session& mine,
                                     const std::string& other_broker, const fleet_session& other) {
    const auto o = resolve_conflict(mine, opts_.broker_id, other, other_broker, opts_.clones);
    const bool refused = o.clone && opts_.clones == clone_policy::refuse;
    if (o.clone) {
        ++clones_;
        log_.warning("devicegate: possible clone device=" + device + " broker=" + opts_.broker_id + " address=" +
                     log_safe(mine.address) + " other_broker=" + other_broker + " other_address=" +
                     log_safe(other.address) + " policy=" + (refused ? "refuse" : "log"));
    }
    if (o.kick_other) {
        const std::string key = opts_.model.kicks(other_broker);
        pushes.push_back({"RPUSH", key,
                             encode_takeover({device, other.sid, opts_.broker_id, mine.connected_at, mine.address,
                                              o.clone, refused})});
        // Bounded and short-lived: a kick nobody takes (that broker died) must not pile up.
        pushes.push_back({"LTRIM", key, std::to_string(-max_queued_kicks), "-1"});
        pushes.push_back({"PEXPIRE", key, std::to_string(kick_ttl_ms)});
    }
    if (o.kick_mine) {
        push_kick({device, mine.sid, refused ? reason::clone_refused : reason::session_taken_over,
                   "broker=" + opts_.broker_id + " new_broker=" + other_broker +
                       " new_address=" + log_safe(other.address) + " clone=" + (o.clone ? "yes" : "no")});
    }
}

void fleet_registry::heartbeat(redis_connection& redis) {
    const auto now = unix_ms_now();
    const auto extras = extras_ ? extras_() : heartbeat_extras{};
    namespace f = broker_field;
    const std::string key = opts_.model.broker(opts_.broker_id);
    const command_list commands{
        {"HGET", key, f::run},
        {"HSET", key, f::last_heartbeat, std::to_string(now), f::started_at, std::to_string(started_at_), f::run,
         run_id_,
         f::heartbeat_timeout, std::to_string(opts_.heartbeat_timeout.count()), f::sessions,
         std::to_string(written_.size()), f::denylist_synced_at, std::to_string(extras.denylist_synced_at),
         f::denylist_link, extras.denylist_link ? "up" : "down", f::job_backlog, std::to_string(extras.job_backlog),
         f::takeovers, std::to_string(takeovers()), f::clones, std::to_string(clones()), f::version,
         DEVICEGATE_VERSION, f::host, host_name(), f::pid, std::to_string(::getpid())},
        {"PEXPIRE", key, std::to_string(dead_broker_retention_ms)},
        {"ZADD", opts_.model.brokers(), std::to_string(now + opts_.heartbeat_timeout.count()), opts_.broker_id},
        {"ZREMRANGEBYSCORE", opts_.model.brokers(), "-inf", "(" + std::to_string(now - dead_broker_retention_ms)},
        // One expiry per heartbeat for every session of this broker: a broker that dies
        // leaves nothing behind after heartbeat_timeout.
        {"PEXPIRE", opts_.model.sessions(opts_.broker_id), std::to_string(opts_.heartbeat_timeout.count())},
    };
    auto replies = redis.pipeline(commands);
    expect_all_ok(replies, commands);
    // Another run's id after this one's first heartbeat: a second broker writes the same id.
    auto previous = reply_optional_string(replies[0].get(), key);
    if (heartbeats_++ > 0 && previous && *previous != run_id_ && !duplicate_logged_) {
        duplicate_logged_ = true;
        log_.error("devicegate: another broker writes the heartbeat of broker_id=" + opts_.broker_id +
                   " (its run " + log_safe(*previous, 32) + ", this run " + run_id_ +
                   "): give every broker its own plugin_opt_broker_id, or their sessions overwrite each other");
    }
}

// ---- dg-fleet-kick

void fleet_registry::run_receiver(background_loop& loop) {
    run_linked(
        loop, [&] { receiver_session(loop); }, [&](const std::string& cause) { log_kick_queue_down(cause); }, [] {});
}

void fleet_registry::log_kick_queue_down(const std::string& cause) {
    if (kick_queue_down_logged_) return;
    kick_queue_down_logged_ = true;
    log_.warning("devicegate: fleet kick queue down (" + opts_.redis.describe() + "): " + log_safe(cause, 300) +
                 "; takeovers by other brokers wait until it is back");
}

void fleet_registry::receiver_session(background_loop& loop) {
    const std::string key = opts_.model.kicks(opts_.broker_id);
    // Its own connection: BLPOP blocks it. The block is short so that stop() is prompt; it
    // must stay below the command timeout (a socket read timeout is a link failure).
    redis_connection redis(opts_.redis);
    const auto block_ms = std::min<long long>(200, opts_.redis.command_timeout.count() / 2);
    char block[32];
    std::snprintf(block, sizeof block, "%.3f", static_cast<double>(block_ms) / 1000.0);
    while (!loop.stopping()) {
        auto reply = redis.command({"BLPOP", key, block});
        // Up again only once a command answered: a hung server accepts connections, and
        // resetting on connect logged "down" again on every reconnect.
        if (kick_queue_down_logged_) {
            kick_queue_down_logged_ = false;
            log_.notice("devicegate: fleet kick queue up again (" + opts_.redis.describe() + ")");
        }
        if (is_nil(reply.get())) continue;
        auto popped = reply_array(reply.get(), "BLPOP " + key, 2);
        receive(reply_string(popped[1], "BLPOP " + key));
    }
}

void fleet_registry::receive(std::string_view payload) {
    takeover_message m;
    try {
        m = parse_takeover(payload);
    } catch (const std::invalid_argument& e) {
        ++malformed_;
        log_.warning("devicegate: malformed takeover kick in " + opts_.model.kicks(opts_.broker_id) + ": " + e.what());
        return;
    }
    push_kick({m.device, m.sid, m.refused ? reason::clone_refused : reason::session_taken_over,
               "broker=" + opts_.broker_id + " new_broker=" + log_safe(m.broker) + " new_address=" + log_safe(m.address) +
                   " new_connected_at=" + std::to_string(m.connected_at) + " clone=" + (m.clone ? "yes" : "no")});
}

}  // namespace devicegate
