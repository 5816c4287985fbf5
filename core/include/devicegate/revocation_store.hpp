#pragma once
// The deny-list's home in Redis, both sides of it: devicegate-ctl writes a revocation
// (HSET into <p>revoked:serial|device, then PUBLISH on <p>revocations), the plugin's
// denylist_sync reads it (SUBSCRIBE first, then HKEYS of both hashes, then each message).
// Keeping the writer and the reader in one class keeps the keys, the entry JSON and the
// message format from drifting apart (redis_model.hpp documents the model).
#include "devicegate/denylist.hpp"
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace devicegate {

/// What is revoked: a device id, or a certificate serial (normalized hex).
struct revocation_target {
    bool serial = false;
    std::string value;
    /// "serial 0A7A" / "device dev-1".
    std::string describe() const { return (serial ? "serial " : "device ") + value; }
};

/// The value stored under a revoked serial or device: {"reason":..,"at":unix,"by":..}.
struct revocation_entry {
    std::string reason;
    std::optional<std::int64_t> at;  // unix seconds
    std::string by;                  // who revoked it, e.g. "devicegate-bridge"; empty: not written
};
std::string encode_revocation_entry(const revocation_entry& entry);
/// nullopt if it is not a JSON object (DeviceGate did not write it).
std::optional<revocation_entry> parse_revocation_entry(std::string_view json);

class revocation_store {
public:
    revocation_store(redis_connection& redis, redis_model model);

    // ---- writing (devicegate-ctl, devicegate-bridge)
    /// HSET, then PUBLISH; returns how many subscribers (brokers) got the message.
    long long revoke(const revocation_target& target, const revocation_entry& entry);
    /// HDEL, then PUBLISH; nullopt if it was not revoked (nothing is published then).
    std::optional<long long> unrevoke(const revocation_target& target);
    /// After revoke() (and enqueue_decommission()): waits until a replica confirmed every write
    /// of this connection so far (WAIT 1 <timeout ms>), if the master has a replica. A single
    /// Redis without replicas does not wait (nothing to wait for; a plain URL without
    /// replicas is not `expected` to replicate). Throws redis_io_error if the node is no
    /// longer the master.
    replication_status wait_replicated(std::chrono::milliseconds timeout);
    /// After revoke(): XADD of a decommission job (job.hpp) for the device, with the serial and
    /// fingerprint its hash holds (if any). Returns the stream entry id. The worker acts on it
    /// only while the device stays revoked (docs/worker.md "Decommission").
    std::string enqueue_decommission(const std::string& device_id, const std::string& reason, std::int64_t at);

    // ---- reading
    /// The stored entry (JSON), nullopt if it is not revoked.
    std::optional<std::string> entry(const revocation_target& target);
    /// True when the device id or the certificate serial (normalized hex) is revoked.
    bool denies(const std::string& device_id, const std::string& serial_hex);
    /// Every revoked value of one kind with its entry (JSON).
    std::map<std::string, std::string> entries(bool serials);

    /// The whole deny-list; serials that are not hex are left out and reported in `malformed`.
    struct malformed_entry {
        std::string key;
        std::string value;
    };
    struct snapshot {
        denylist list;
        std::vector<malformed_entry> malformed;
    };
    snapshot load();

    const redis_model& model() const noexcept { return model_; }

private:
    std::string key_of(const revocation_target& target) const;
    long long announce(const denylist_change& change);

    redis_connection& redis_;
    redis_model model_;
};

/// The reading side's subscription to <p>revocations, on its own connection (a subscribed
/// connection accepts no other commands).
class revocation_subscription {
public:
    /// Connects and SUBSCRIBEs, waiting for the confirmation so that a full load started
    /// afterwards misses no change; throws redis_io_error if it does not come within the
    /// command timeout.
    revocation_subscription(const redis_options& options, const redis_model& model);
    /// The node the subscription listens on (the master when it was made).
    const redis_endpoint& address() const noexcept { return sub_.address(); }
    /// The next message's payload (parse it with parse_denylist_change); nullopt when none
    /// came within `timeout`. Throws redis_io_error when the link breaks.
    std::optional<std::string> next_change(std::chrono::milliseconds timeout);

private:
    redis_connection sub_;
    std::string channel_;
};

}  // namespace devicegate
