#pragma once
// The Redis data model shared by the plugin, devicegate-ctl and the worker. Every key is
// under a configurable prefix (default "devicegate:"). README.md documents it.
//
//   <p>revoked:serial   HASH  normalize_serial_hex (pki.hpp) serial -> JSON {"reason":..,"at":unix,"by":..}
//   <p>revoked:device   HASH  device id             -> JSON {"reason":..,"at":unix,"by":..}
//   <p>revocations      pub/sub channel: JSON {"op":"revoke"|"unrevoke","kind":"serial"|"device","value":..}
//   <p>device:<id>      HASH  the fields of device_field below
//   <p>jobs             STREAM of jobs, field "job" = JSON (schema 1), field "type"
//   <p>jobs:dead        STREAM of dead-lettered jobs
//   <p>jobs:marker      STRING a random token planted by the brokers (job_producer.cpp): when it
//                       vanishes or changes, Redis lost its data and the jobs it held
//   <p>sessions:<broker> HASH device id -> JSON session (fleet_model.hpp); expires with the heartbeat
//   <p>broker:<broker>  HASH the broker's heartbeat fields (fleet_model.hpp broker_field)
//   <p>brokers          ZSET broker id -> unix ms until which it counts as live
//   <p>kicks:<broker>   LIST of JSON takeover kicks for that broker (RPUSH, BLPOP; short TTL)
//   <p>revoke-ack:<device|serial>:<value>  SET of broker ids that applied a revocation (short TTL)
//
// The revocation lists are HASHes rather than SETs so that one key holds both membership
// and the operator's reason, which `devicegate-ctl status` shows.
#include <string>
#include <string_view>

namespace devicegate {

struct redis_model {
    std::string prefix = "devicegate:";

    std::string revoked_serials() const { return prefix + "revoked:serial"; }
    std::string revoked_devices() const { return prefix + "revoked:device"; }
    std::string revocations_channel() const { return prefix + "revocations"; }
    std::string device(std::string_view id) const { return prefix + "device:" + std::string(id); }
    std::string jobs() const { return prefix + "jobs"; }
    std::string dead_jobs() const { return prefix + "jobs:dead"; }
    /// A random token the brokers plant; when it vanishes or changes, Redis lost its data.
    std::string jobs_marker() const { return prefix + "jobs:marker"; }
    /// A counter the brokers INCR before WAIT when a batch of jobs must reach a replica: WAIT
    /// only counts the writes of its own connection, and a re-sent batch may write nothing.
    std::string jobs_replicated() const { return prefix + "jobs:replicated"; }
    // The fleet: one session per device across brokers (fleet_model.hpp, docs/redis.md).
    std::string sessions(std::string_view broker_id) const { return prefix + "sessions:" + std::string(broker_id); }
    std::string broker(std::string_view broker_id) const { return prefix + "broker:" + std::string(broker_id); }
    std::string brokers() const { return prefix + "brokers"; }
    /// HASH consumer_name -> unix ms of the worker's last heartbeat (devicegate-ctl workers).
    std::string workers() const { return prefix + "workers"; }
    /// A list rather than a pub/sub channel: a kick pushed while the broker reconnects waits for
    /// it, and the plugin's ACL user needs no PUBLISH right (which would cover the revocations channel).
    std::string kicks(std::string_view broker_id) const { return prefix + "kicks:" + std::string(broker_id); }
    /// `kind` is "device" or "serial" (normalized hex).
    std::string revoke_ack(std::string_view kind, std::string_view value) const {
        return prefix + "revoke-ack:" + std::string(kind) + ":" + std::string(value);
    }
};

/// The fields of a device hash. The plugin's first-connect script writes the first five (in
/// Lua: job_producer.cpp), the worker the registration state, devicegate-ctl reads them all.
namespace device_field {
inline constexpr const char* first_seen = "first_seen";            // unix seconds
inline constexpr const char* serial = "serial";                    // upper-case hex
inline constexpr const char* fingerprint = "fingerprint";          // of the current certificate
inline constexpr const char* broker = "broker";                    // the broker_id that saw it
inline constexpr const char* cert_changed_at = "cert_changed_at";  // unix seconds
inline constexpr const char* thingsboard = "thingsboard";          // registered | retrying | failed
inline constexpr const char* thingsboard_id = "thingsboard_id";    // ThingsBoard's device UUID
inline constexpr const char* thingsboard_fingerprint = "thingsboard_fingerprint";  // credentials held there
inline constexpr const char* hawkbit = "hawkbit";                  // registered | retrying | failed
inline constexpr const char* registered_at = "registered_at";      // unix seconds
inline constexpr const char* last_error = "last_error";
inline constexpr const char* certificate = "certificate";          // PEM the worker registered (public)
// unix seconds: removed from ThingsBoard and hawkBit by a decommission job; the worker does not
// register the device again until `devicegate-ctl reregister` clears it
inline constexpr const char* decommissioned = "decommissioned";
}  // namespace device_field
/// The values of the thingsboard and hawkbit fields.
namespace registration_state {
inline constexpr const char* registered = "registered";
inline constexpr const char* retrying = "retrying";
inline constexpr const char* failed = "failed";
inline constexpr const char* decommissioned = "decommissioned";
}  // namespace registration_state

/// The fields of a job stream entry (<p>jobs and <p>jobs:dead).
namespace job_field {
inline constexpr const char* type = "type";
inline constexpr const char* job = "job";            // JSON, job.hpp
inline constexpr const char* attempts = "attempts";  // after a requeue
inline constexpr const char* replayed_from = "replayed_from";
// dead letters only
inline constexpr const char* source_id = "source_id";
inline constexpr const char* reason = "reason";
inline constexpr const char* error = "error";
inline constexpr const char* failed_at = "failed_at";
inline constexpr const char* worker = "worker";
inline constexpr const char* device_id = "device_id";
inline constexpr const char* target = "target";
inline constexpr const char* status = "status";
inline constexpr const char* body = "body";
}  // namespace job_field

}  // namespace devicegate
