#pragma once
// One session per device across every broker that shares a Redis (issue 16): the values the
// brokers write (a session entry per device, a heartbeat per broker), the takeover message on
// a broker's kick list, the rule that decides which of two sessions ends, and the readers
// devicegate-ctl and the tests use. Pure functions and plain Redis reads; the plugin's
// background threads are fleet_registry.hpp. docs/redis.md documents the keys.
//
// Which session survives: the newer one, by (connected_at, broker id, sid). Every broker
// writes its own admission before it looks for the device elsewhere, so of two overlapping
// sessions at least the later lookup sees the other; whichever broker sees the conflict
// ends the older session (its own or, through the kick list, the other broker's). The
// rule is the same on both sides, so they never end both (unless clone_policy is refuse).
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate {

/// Unix milliseconds (the registry's times are compared across hosts: keep clocks in NTP sync).
std::int64_t unix_ms_now();

/// A device's session on one broker: the value in <p>sessions:<broker>.
struct fleet_session {
    std::string sid;               // unique per session and broker run ("<run>.<seq>")
    std::int64_t connected_at = 0;  // unix ms
    std::string address;           // source IP as mosquitto reports it, "-" if unknown
    std::string fingerprint;       // SHA-256 hex of the certificate
    std::string serial;            // upper-case hex

    bool operator==(const fleet_session&) const = default;
};
/// Compact JSON {"sid":..,"at":ms,"addr":..,"fp":..,"serial":..}.
std::string encode_fleet_session(const fleet_session& s);
/// Throws std::invalid_argument naming what is wrong (another writer, or garbage).
fleet_session parse_fleet_session(std::string_view json);

/// A takeover kick, pushed onto <p>kicks:<broker> of the broker holding the older session.
struct takeover_message {
    std::string device;
    std::string sid;                // the receiver's session to end; any other is left alone
    std::string broker;             // the broker holding the newer session
    std::int64_t connected_at = 0;  // of the newer session, unix ms
    std::string address;            // of the newer session
    bool clone = false;             // the sessions came from different addresses
    bool refused = false;           // clone_policy refuse: the sender ends its session too
    bool operator==(const takeover_message&) const = default;
};
std::string encode_takeover(const takeover_message& m);
/// Throws std::invalid_argument (a message DeviceGate did not write is dropped and counted).
takeover_message parse_takeover(std::string_view json);

enum class clone_policy { log, refuse };

/// What a broker does on finding `other` on `other_broker` for a device it holds as `mine`.
struct conflict_outcome {
    bool kick_other = false;  // push a takeover kick to other_broker
    bool kick_mine = false;   // end the local session
    bool clone = false;       // both known source addresses, and they differ
};
/// True if session a (on broker a_broker) is older than b (on b_broker): connect time, then
/// broker id, then sid; never true both ways.
bool older_session(const fleet_session& a, std::string_view a_broker, const fleet_session& b,
                   std::string_view b_broker);
/// The older session ends; a clone under clone_policy refuse ends both.
conflict_outcome resolve_conflict(const fleet_session& mine, std::string_view my_broker, const fleet_session& other,
                                  std::string_view other_broker, clone_policy policy);
/// Same source host: the IP addresses as mosquitto reports them (no port) are equal. An
/// unknown address ("-" or "") is never a different host.
bool same_source(std::string_view a, std::string_view b);

/// The fields of <p>broker:<broker>.
namespace broker_field {
inline constexpr const char* last_heartbeat = "last_heartbeat";  // unix ms
inline constexpr const char* started_at = "started_at";          // unix ms
inline constexpr const char* heartbeat_timeout = "heartbeat_timeout_ms";
inline constexpr const char* sessions = "sessions";              // device sessions online
inline constexpr const char* denylist_synced_at = "denylist_synced_at";  // unix s, 0 never
inline constexpr const char* denylist_link = "denylist_link";    // up | down
inline constexpr const char* job_backlog = "job_backlog";        // jobs buffered + journaled
inline constexpr const char* takeovers = "takeovers";            // sessions this broker ended for another
inline constexpr const char* clones = "clones";                  // possible clones it detected
inline constexpr const char* version = "version";
inline constexpr const char* host = "host";
inline constexpr const char* pid = "pid";
inline constexpr const char* run = "run";                        // random per broker start
}  // namespace broker_field

/// How long a dead broker stays listed in <p>brokers and <p>broker:<id> (for ctl brokers).
inline constexpr std::int64_t dead_broker_retention_ms = 24LL * 3600 * 1000;
/// How long a revocation's acknowledgements are kept (<p>revoke-ack:...).
inline constexpr std::int64_t revoke_ack_ttl_ms = 60'000;

// ---- Readers (devicegate-ctl, tests).

struct broker_view {
    std::string id;
    std::int64_t live_until = 0;  // unix ms (the score in <p>brokers)
    std::map<std::string, std::string> fields;  // <p>broker:<id>; empty once it expired
    bool live(std::int64_t now_ms) const { return live_until > now_ms; }
    /// A numeric field, or nullopt when it is missing or not a number.
    std::optional<std::int64_t> number(const char* field) const;
};
/// Every broker in <p>brokers (live and recently dead), by id.
std::vector<broker_view> load_brokers(redis_connection& redis, const redis_model& model);
/// The ids of the brokers live at `now_ms`, sorted.
std::vector<std::string> live_brokers(redis_connection& redis, const redis_model& model, std::int64_t now_ms);

struct device_location {
    std::string broker;
    fleet_session session;
};
/// Where a device holds a session: every live broker whose <p>sessions:<broker> names it
/// (more than one only while a takeover is under way, or for a clone).
std::vector<device_location> locate_device(redis_connection& redis, const redis_model& model,
                                           const std::string& device_id, std::int64_t now_ms);

}  // namespace devicegate
