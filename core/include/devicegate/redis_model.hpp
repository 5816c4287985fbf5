#pragma once
// The Redis data model shared by the plugin, devicegate-ctl and the worker. Every key is
// under a configurable prefix (default "devicegate:"). README.md documents it.
//
//   <p>revoked:serial   HASH  upper-case hex serial -> JSON {"reason":..,"at":unix,"by":..}
//   <p>revoked:device   HASH  device id             -> JSON {"reason":..,"at":unix,"by":..}
//   <p>revocations      pub/sub channel: JSON {"op":"revoke"|"unrevoke","kind":"serial"|"device","value":..}
//   <p>device:<id>      HASH  first_seen, serial, fingerprint, broker, cert_changed_at,
//                             thingsboard, hawkbit (registration state), last_error
//   <p>jobs             STREAM of jobs, field "job" = JSON (schema 1), field "type"
//   <p>jobs:dead        STREAM of dead-lettered jobs
//
// The revocation lists are HASHes rather than SETs so that one key holds both membership
// and the operator's reason, which `devicegate-ctl status` shows.
#include <optional>
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
};

/// "0x0a:bc" / "0ABC" / "abc" -> "0ABC": upper-case hex of the serial's magnitude bytes,
/// without leading zero bytes, as the plugin logs serials. nullopt if it is not hex.
std::optional<std::string> normalize_serial_hex(std::string_view text);

}  // namespace devicegate
