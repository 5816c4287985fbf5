#pragma once
// The device sessions the plugin admitted, so that revocations can find and kick them.
// Broker thread only. Keyed by client id: mosquitto keeps one connection per client id and
// disconnects the older one on takeover, so a late DISCONNECT of the old connection must
// not remove the new one (hence the client handle comparison).
#include "devicegate/pki.hpp"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace devicegate {

class session_registry {
public:
    void admit(const void* client, const std::string& device_id, const serial_key& serial,
               const sha256_digest& fingerprint = {});
    /// Removes the session if `client` still holds it; returns its certificate's fingerprint.
    std::optional<sha256_digest> remove(const void* client, const std::string& device_id);
    /// The device id the plugin admitted this client as, or nullptr.
    const std::string* device_of(const void* client, const std::string& client_id) const;
    std::vector<std::string> ids_holding(const std::vector<serial_key>& serials) const;
    std::vector<std::string> all_ids() const;
    bool contains(const std::string& device_id) const { return by_id_.count(device_id) > 0; }
    std::size_t size() const noexcept { return by_id_.size(); }

private:
    struct session {
        const void* client;
        serial_key serial;
        sha256_digest fingerprint;
    };
    std::unordered_map<std::string, session> by_id_;
    std::unordered_map<serial_key, std::string, serial_key_hash> by_serial_;
};

}  // namespace devicegate
