#pragma once
// The Redis deny-list as an immutable local copy (by serial and by device id), its changes,
// and the link health the staleness policy is based on.
#include "devicegate/pki.hpp"
#include "devicegate/revocation.hpp"

#include <atomic>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

namespace devicegate {

/// Heterogeneous lookup so the broker thread looks up string_views without allocating.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using string_set = std::unordered_set<std::string, string_hash, std::equal_to<>>;

class denylist {
public:
    string_set serials;  // normalized hex
    string_set devices;

    bool revokes(std::string_view device_id, std::string_view serial_hex) const {
        return devices.find(device_id) != devices.end() || serials.find(serial_hex) != serials.end();
    }
    std::size_t size() const noexcept { return serials.size() + devices.size(); }
};

/// One pub/sub message: {"op":"revoke"|"unrevoke","kind":"serial"|"device","value":"..."}.
struct denylist_change {
    bool revoke = true;
    bool serial = false;  // else device id
    std::string value;
};
/// Throws std::invalid_argument naming what is wrong (never the whole payload).
denylist_change parse_denylist_change(std::string_view json);
std::string encode_denylist_change(const denylist_change& change);

/// The entries of `next` that `prev` did not have: what to kick.
struct denylist_additions {
    std::vector<std::string> devices;
    std::vector<serial_key> serials;
};
denylist_additions added_entries(const denylist* prev, const denylist& next);

/// Shared between the Redis thread (writer) and the broker thread (reader).
struct denylist_state {
    snapshot_slot<denylist> list;
    /// 0 while the local copy is known to be current (subscribed and synced); otherwise the
    /// unix time since when it may be behind.
    std::atomic<std::int64_t> stale_since{0};
    std::atomic<std::int64_t> synced_at{0};
};

/// The local copy on disk, so a broker restarted while Redis is down still refuses what
/// was revoked (JSON {"serials":[...],"devices":[...],"synced_at":unix}).
void save_denylist_file(const std::string& path, const denylist& list, std::int64_t synced_at);
/// Throws std::runtime_error (missing file, bad JSON) naming the cause.
denylist load_denylist_file(const std::string& path, std::int64_t& synced_at);

}  // namespace devicegate
