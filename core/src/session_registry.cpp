#include "devicegate/session_registry.hpp"

namespace devicegate {

void session_registry::admit(const void* client, const std::string& device_id, const serial_key& serial,
                             const sha256_digest& fingerprint) {
    auto [it, inserted] = by_id_.try_emplace(device_id, session{client, serial, fingerprint});
    if (!inserted) {
        auto old = by_serial_.find(it->second.serial);
        if (old != by_serial_.end() && old->second == device_id) by_serial_.erase(old);
        it->second = session{client, serial, fingerprint};
    }
    by_serial_[serial] = device_id;
}

std::optional<sha256_digest> session_registry::remove(const void* client, const std::string& device_id) {
    auto it = by_id_.find(device_id);
    if (it == by_id_.end() || it->second.client != client) return std::nullopt;
    const sha256_digest fingerprint = it->second.fingerprint;
    auto s = by_serial_.find(it->second.serial);
    if (s != by_serial_.end() && s->second == device_id) by_serial_.erase(s);
    by_id_.erase(it);
    return fingerprint;
}

const std::string* session_registry::device_of(const void* client, const std::string& client_id) const {
    auto it = by_id_.find(client_id);
    if (it == by_id_.end() || it->second.client != client) return nullptr;
    return &it->first;
}

std::vector<std::string> session_registry::ids_holding(const std::vector<serial_key>& serials) const {
    std::vector<std::string> out;
    if (serials.size() > by_serial_.size()) {
        // Many new revocations (a large CRL update): walk the sessions instead.
        for (const auto& [serial, id] : by_serial_) {
            if (std::binary_search(serials.begin(), serials.end(), serial)) out.push_back(id);
        }
        return out;
    }
    for (const auto& serial : serials) {
        auto it = by_serial_.find(serial);
        if (it != by_serial_.end()) out.push_back(it->second);
    }
    return out;
}

std::vector<std::string> session_registry::all_ids() const {
    std::vector<std::string> out;
    out.reserve(by_id_.size());
    for (const auto& entry : by_id_) out.push_back(entry.first);
    return out;
}

}  // namespace devicegate
