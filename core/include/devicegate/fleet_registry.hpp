#pragma once
// The plugin's side of the fleet-wide session registry (fleet_model.hpp; docs/redis.md "The
// fleet"). The broker thread reports admissions and disconnects here without I/O; one
// background thread ("dg-fleet") writes them into <p>sessions:<broker> in pipelined batches,
// looks each admitted device up on the other live brokers, pushes takeover kicks and the
// broker's heartbeat; a second one ("dg-fleet-kick") waits (BLPOP) on this broker's kick
// list. Neither calls mosquitto_*: kicks wait in a queue for the gate's next tick().
#include "devicegate/background_loop.hpp"
#include "devicegate/broker_queue.hpp"
#include "devicegate/fleet_model.hpp"
#include "devicegate/log.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/serial_spelling.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace devicegate {

/// What the heartbeat reports besides the registry's own numbers; filled on the background
/// thread (read atomics only).
struct heartbeat_extras {
    std::int64_t denylist_synced_at = 0;  // unix s
    bool denylist_link = false;
    std::uint64_t job_backlog = 0;
};

class fleet_registry {
public:
    struct options {
        redis_options redis;
        redis_model model;
        std::string broker_id;
        std::chrono::milliseconds heartbeat_interval{5000};
        std::chrono::milliseconds heartbeat_timeout{15000};
        clone_policy clones = clone_policy::log;
    };
    using extras_fn = std::function<heartbeat_extras()>;

    fleet_registry(options opts, logger log, extras_fn extras = {});
    ~fleet_registry();
    fleet_registry(const fleet_registry&) = delete;
    fleet_registry& operator=(const fleet_registry&) = delete;

    void start();
    void stop() noexcept;

    // ---- broker thread
    /// A device session was admitted (after mosquitto accepted it). Returns the session's
    /// number, which the caller keeps with the session (session_record::fleet_seq) for
    /// disconnected() and take_kicks(): the registry keeps nothing per device on this thread.
    std::uint64_t admitted(const std::string& device_id, const char* address, const sha256_digest& fingerprint,
                           const serial_key& serial, std::string_view serial_hex);
    /// MOSQ_EVT_DISCONNECT of the client that held session `seq` of the device.
    void disconnected(const std::string& device_id, std::uint64_t seq);
    /// The deny-list changes this broker applied (its tick performed their kicks): each is
    /// acknowledged in <p>revoke-ack:... for devicegate-ctl revoke.
    void acknowledge(const std::vector<kick_request>& applied);
    /// The device's session number on this broker now (0: none).
    using current_fn = std::function<std::uint64_t(const std::string& device_id)>;
    /// The sessions to end now (takeovers and clone refusals), each logged once; a request
    /// for a session that already ended or was replaced is dropped.
    std::vector<std::pair<std::string, reason>> take_kicks(const current_fn& current);

    // ---- any thread
    bool link_up() const noexcept { return link_up_.load(); }
    /// fleet/... counters for $SYS/broker/devicegate/.
    void append_stats(std::vector<std::pair<std::string, std::string>>& out) const;
    std::uint64_t takeovers() const noexcept { return takeovers_.load(); }
    std::uint64_t clones() const noexcept { return clones_.load(); }
    std::uint64_t malformed() const noexcept { return malformed_.load(); }
    /// Sessions as dg-fleet last applied them.
    std::size_t sessions() const noexcept { return online_.load(); }

private:
    // Per connected device, on dg-fleet only and in binary: with 10,000 devices every 100
    // bytes here are 1 MB of the broker's RSS (issue 13). The entry is encoded when written.
    struct written_session {  // what <p>sessions:<broker> holds for the device
        std::uint64_t seq = 0;  // the sid is "<run_id_>.<seq>"
        std::int64_t connected_at = 0;
        sha256_digest fingerprint{};
        serial_key serial;
        serial_spelling serial_text;
        std::string address;
    };
    enum class event_kind { admit, remove, ack };
    struct event {
        event_kind what;
        std::string device;       // for ack: the revoke-ack key
        written_session session;  // admit; remove: its seq only
    };
    struct pending_kick {
        std::string device;
        std::string sid;
        reason why;
        std::string detail;  // for the log line
    };

    void push(event e);
    void push_kick(pending_kick k);
    // dg-fleet
    void run(background_loop& loop);
    void link_session(background_loop& loop);
    std::vector<event> drain_events();
    /// Applies `events` to written_; with `changes`, also the commands that bring
    /// <p>sessions:<broker> to the same state (one HSET, one HDEL: a session that came and went
    /// within the batch costs nothing) and the devices admitted, for the conflict check.
    void apply(std::vector<event>& events, std::vector<std::vector<std::string>>* changes = nullptr,
               std::vector<std::string>* admitted = nullptr);
    std::string sid(std::uint64_t seq) const { return run_id_ + "." + std::to_string(seq); }
    fleet_session session_of(const written_session& w) const;
    void note_local_clone(const std::string& device, const written_session& older, const written_session& newer);
    void write_all(redis_connection& redis);
    void write_batch(redis_connection& redis, std::vector<event>& events);
    void check_conflicts(redis_connection& redis, const std::vector<std::string>& devices,
                         const std::vector<std::string>& live);
    void handle_conflict(std::vector<std::vector<std::string>>& pushes, const std::string& device,
                         const fleet_session& mine, const std::string& other_broker, const fleet_session& other);
    void heartbeat(redis_connection& redis);
    void sign_off(redis_connection& redis) noexcept;
    void mark_down(const std::string& cause);
    void log_kick_queue_down(const std::string& cause);
    // dg-fleet-kick
    void run_receiver(background_loop& loop);
    void receiver_session(background_loop& loop);
    void receive(std::string_view payload);

    options opts_;
    logger log_;
    extras_fn extras_;
    std::string run_id_;
    std::int64_t started_at_ = 0;

    std::uint64_t next_seq_ = 0;  // broker thread only

    // dg-fleet only: what <p>sessions:<broker> should hold
    std::unordered_map<std::string, written_session> written_;
    bool down_logged_ = false;
    std::uint64_t heartbeats_ = 0;
    bool duplicate_logged_ = false;
    bool kick_queue_down_logged_ = false;  // dg-fleet-kick only

    std::mutex mutex_;  // guards events_ and kicks_, never held during I/O
    std::vector<event> events_;
    std::size_t last_batch_ = 0;  // dg-fleet's: the size of the batch it took last
    std::vector<pending_kick> kicks_;

    std::atomic<bool> link_up_{false};
    std::atomic<std::uint64_t> takeovers_{0}, clones_{0}, malformed_{0}, link_downs_{0};
    std::atomic<std::size_t> online_{0};
    // last: stopped first
    background_loop receiver_{"dg-fleet-kick", [this](background_loop& l) { run_receiver(l); }};
    background_loop loop_{"dg-fleet", [this](background_loop& l) { run(l); }};
};

/// The hex of a deny-list serial key as revoke-ack keys spell it (normalize_serial_hex), or
/// "" for a key that is not a plain RFC 5280 serial.
std::string serial_key_hex(const serial_key& key);

}  // namespace devicegate
