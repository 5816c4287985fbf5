#pragma once
// The identities the plugin admitted, as long as mosquitto's client object may still ask
// about them. Broker thread only. Keyed by client id: mosquitto keeps one connection per
// client id and disconnects the older one on takeover, so a late DISCONNECT of the old
// connection must not touch the new one (hence the client handle comparison).
//
// Why a record outlives its connection (docs/design-broker-edges.md, section 1): mosquitto
// 2.0.11 fires MOSQ_EVT_DISCONNECT (src/context.c:213) before it ACL-checks the will
// (:217 -> :184), and ACL-checks every message for an offline persistent session
// (src/subs.c:72); no plugin event reports when the client object is freed. So DISCONNECT
// marks the record offline; a record whose session cannot outlive the connection is erased
// on the next tick, the others after a retention time or when too many are offline.
#include "devicegate/pki.hpp"
#include "devicegate/serial_spelling.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace devicegate {

enum class identity_kind : std::uint8_t { device, service };

/// Per-client rate limit of deny log lines and the optional disconnect after too many
/// denials (issue 12, finding 4). Pure logic over a steady clock.
struct deny_limits {
    std::size_t log_burst = 5;                  // full lines per client and interval
    std::chrono::milliseconds log_interval{10'000};
    std::size_t disconnect_after = 0;           // 0 = never
    std::chrono::milliseconds disconnect_interval{10'000};
};

struct deny_window {
    std::chrono::steady_clock::time_point log_start{}, kick_start{};
    std::uint64_t logged = 0;      // full lines in the current log window
    std::uint64_t suppressed = 0;  // denials not logged in the current log window
    std::uint64_t in_kick_window = 0;
    std::string last_topic;        // of the last suppressed denial
};

/// What to do about one more denial.
struct deny_note {
    bool log_line = false;             // log this denial in full
    std::uint64_t summary = 0;         // > 0: log a summary of this many suppressed denials first
    std::string summary_topic;
    bool kick = false;                 // the disconnect threshold was reached just now
};

/// Counts one denial into `w` at `now`.
deny_note note_deny(deny_window& w, const deny_limits& limits, std::string_view topic,
                    std::chrono::steady_clock::time_point now);
/// On tick: a window that ended with suppressed denials yields its summary (and resets it).
std::uint64_t flush_deny_summary(deny_window& w, const deny_limits& limits, std::chrono::steady_clock::time_point now,
                                 std::string& topic);

/// Kept per admitted client for as long as mosquitto may ask about it: only what the ACL
/// checks, the offline re-check and the kicks need (issue 13: ~100 bytes plus the id and
/// the hash node, where it was ~330 with a serial index and a hex copy).
struct session_record {
    const void* client = nullptr;
    serial_key serial;
    identity_kind kind = identity_kind::device;
    bool online = true;
    bool ends_with_connection = false;  // erase on the next tick after DISCONNECT
    bool kick_pending = false;
    sha256_digest fingerprint{};
    std::uint64_t fleet_seq = 0;  // fleet_registry's number of this session (0: not registered)
    std::chrono::steady_clock::time_point offline_since{};
    serial_spelling serial_text;
    std::unique_ptr<deny_window> deny_state;  // only for a client that was denied something

    std::string serial_hex() const { return serial_text.hex(serial); }
    /// The client's deny window, made on its first denial.
    deny_window& denies() {
        if (!deny_state) deny_state = std::make_unique<deny_window>();
        return *deny_state;
    }
    std::uint64_t suppressed_denies() const noexcept { return deny_state ? deny_state->suppressed : 0; }
};

class session_registry {
public:
    /// Records (or replaces) the device's session; returns the new record.
    session_record& admit(const void* client, const std::string& device_id, const serial_key& serial,
                          const sha256_digest& fingerprint = {}, std::string_view serial_hex = "-",
                          identity_kind kind = identity_kind::device);
    /// Erases the record if `client` still holds it; returns its certificate's fingerprint.
    std::optional<sha256_digest> remove(const void* client, const std::string& device_id);
    /// MOSQ_EVT_DISCONNECT: marks the record offline if `client` holds it online, and returns
    /// it (valid until the registry changes); nullptr otherwise. `persists`: the session may
    /// outlive the connection (kept until the retention sweep); otherwise it is erased by the
    /// next sweep_disconnected().
    const session_record* disconnected(const void* client, const std::string& device_id, bool persists,
                                       std::chrono::steady_clock::time_point now);
    /// Erases records whose session ended with the connection (call on tick: the will's
    /// ACL check ran synchronously after DISCONNECT). Returns how many.
    std::size_t sweep_disconnected();
    /// Erases offline records older than `retention`, then the oldest beyond `max_offline`.
    /// Returns the erased ids.
    std::vector<std::string> sweep_offline(std::chrono::steady_clock::time_point now,
                                           std::chrono::milliseconds retention, std::size_t max_offline);

    /// The record this client holds (online or offline), or nullptr.
    session_record* find(const void* client, const std::string& client_id);
    session_record* find(const std::string& client_id);
    /// The device id the plugin admitted this client as, or nullptr.
    const std::string* device_of(const void* client, const std::string& client_id) const;
    /// Online sessions only: kicking an offline one takes mosquitto 2.0.11's double
    /// session_expiry__add path (issue 12, finding 3). `serials` sorted. A scan of the
    /// sessions: revocations are rare, and an index by serial cost every connect an
    /// insertion and every device ~90 bytes (10,000 sessions scan in ~0.1 ms).
    std::vector<std::string> ids_holding(const std::vector<serial_key>& serials) const;
    std::vector<std::string> all_ids() const;
    bool contains(const std::string& device_id) const;
    /// Marks a record for a kick on the next tick (never from inside an ACL check:
    /// mosquitto keeps using the context after it, src/handle_publish.c).
    void request_kick(const std::string& device_id);
    /// Online records whose kick is pending (too many denials); clears the marks.
    std::vector<std::string> take_pending_kicks();
    std::size_t size() const noexcept { return by_id_.size(); }
    std::size_t online() const noexcept { return by_id_.size() - offline_; }
    std::size_t offline() const noexcept { return offline_; }

private:
    void erase(std::unordered_map<std::string, session_record>::iterator it);

    std::unordered_map<std::string, session_record> by_id_;
    struct offline_entry {
        std::string id;
        const void* client;
        std::chrono::steady_clock::time_point since;
    };
    std::deque<offline_entry> offline_order_;  // may hold entries of records since re-admitted
    std::vector<std::string> ending_;          // ids whose session ended with the connection
    std::vector<std::string> kicks_;           // ids with kick_pending
    std::size_t offline_ = 0;
};

}  // namespace devicegate
