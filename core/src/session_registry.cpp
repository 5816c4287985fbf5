#include "devicegate/session_registry.hpp"

namespace devicegate {

deny_note note_deny(deny_window& w, const deny_limits& limits, std::string_view topic,
                    std::chrono::steady_clock::time_point now) {
    deny_note note;
    if (w.log_start == std::chrono::steady_clock::time_point{} || now - w.log_start >= limits.log_interval) {
        note.summary = w.suppressed;
        note.summary_topic = std::move(w.last_topic);
        w.log_start = now;
        w.logged = 0;
        w.suppressed = 0;
        w.last_topic.clear();
    }
    if (w.logged < limits.log_burst) {
        ++w.logged;
        note.log_line = true;
    } else {
        ++w.suppressed;
        w.last_topic.assign(topic.substr(0, 200));
    }
    if (limits.disconnect_after == 0) return note;
    if (w.kick_start == std::chrono::steady_clock::time_point{} || now - w.kick_start >= limits.disconnect_interval) {
        w.kick_start = now;
        w.in_kick_window = 0;
    }
    note.kick = ++w.in_kick_window == limits.disconnect_after;
    return note;
}

std::uint64_t flush_deny_summary(deny_window& w, const deny_limits& limits, std::chrono::steady_clock::time_point now,
                                 std::string& topic) {
    if (w.suppressed == 0 || now - w.log_start < limits.log_interval) return 0;
    const std::uint64_t n = w.suppressed;
    topic = std::move(w.last_topic);
    w.suppressed = 0;
    w.logged = 0;
    w.last_topic.clear();
    w.log_start = {};  // the next denial opens a new window
    return n;
}

session_record& session_registry::admit(const void* client, const std::string& device_id, const serial_key& serial,
                                        const sha256_digest& fingerprint, std::string_view serial_hex,
                                        identity_kind kind) {
    session_record fresh;
    fresh.client = client;
    fresh.serial = serial;
    fresh.serial_text = serial_spelling(serial, serial_hex);
    fresh.fingerprint = fingerprint;
    fresh.kind = kind;
    auto [it, inserted] = by_id_.try_emplace(device_id);
    if (!inserted && !it->second.online) --offline_;
    it->second = std::move(fresh);
    return it->second;
}

void session_registry::erase(std::unordered_map<std::string, session_record>::iterator it) {
    if (!it->second.online) --offline_;
    by_id_.erase(it);
}

std::optional<sha256_digest> session_registry::remove(const void* client, const std::string& device_id) {
    auto it = by_id_.find(device_id);
    if (it == by_id_.end() || it->second.client != client) return std::nullopt;
    const sha256_digest fingerprint = it->second.fingerprint;
    erase(it);
    return fingerprint;
}

const session_record* session_registry::disconnected(const void* client, const std::string& device_id, bool persists,
                                                     std::chrono::steady_clock::time_point now) {
    auto it = by_id_.find(device_id);
    if (it == by_id_.end() || it->second.client != client || !it->second.online) return nullptr;
    session_record& r = it->second;
    r.online = false;
    r.kick_pending = false;
    r.offline_since = now;
    ++offline_;
    if (persists) {
        offline_order_.push_back({device_id, client, now});
    } else {
        r.ends_with_connection = true;
        ending_.push_back(device_id);
    }
    return &r;
}

std::size_t session_registry::sweep_disconnected() {
    std::size_t n = 0;
    for (const auto& id : ending_) {
        auto it = by_id_.find(id);
        if (it != by_id_.end() && !it->second.online && it->second.ends_with_connection) {
            erase(it);
            ++n;
        }
    }
    ending_.clear();
    return n;
}

std::vector<std::string> session_registry::sweep_offline(std::chrono::steady_clock::time_point now,
                                                         std::chrono::milliseconds retention,
                                                         std::size_t max_offline) {
    std::vector<std::string> erased;
    while (!offline_order_.empty()) {
        const offline_entry& e = offline_order_.front();
        auto it = by_id_.find(e.id);
        const bool current = it != by_id_.end() && !it->second.online && it->second.client == e.client &&
                             it->second.offline_since == e.since;
        if (current && now - e.since < retention && offline_ <= max_offline) break;
        if (current) {
            erased.push_back(e.id);
            erase(it);
        }
        offline_order_.pop_front();
    }
    return erased;
}

session_record* session_registry::find(const void* client, const std::string& client_id) {
    auto it = by_id_.find(client_id);
    if (it == by_id_.end() || it->second.client != client) return nullptr;
    return &it->second;
}

session_record* session_registry::find(const std::string& client_id) {
    auto it = by_id_.find(client_id);
    return it == by_id_.end() ? nullptr : &it->second;
}

const std::string* session_registry::device_of(const void* client, const std::string& client_id) const {
    auto it = by_id_.find(client_id);
    if (it == by_id_.end() || it->second.client != client) return nullptr;
    return &it->first;
}

bool session_registry::contains(const std::string& device_id) const {
    auto it = by_id_.find(device_id);
    return it != by_id_.end() && it->second.online;
}

std::vector<std::string> session_registry::ids_holding(const std::vector<serial_key>& serials) const {
    std::vector<std::string> out;
    if (serials.empty()) return out;
    for (const auto& [id, record] : by_id_) {
        if (record.online && std::binary_search(serials.begin(), serials.end(), record.serial)) out.push_back(id);
    }
    return out;
}

std::vector<std::string> session_registry::all_ids() const {
    std::vector<std::string> out;
    out.reserve(by_id_.size());
    for (const auto& [id, record] : by_id_) {
        if (record.online) out.push_back(id);
    }
    return out;
}

void session_registry::request_kick(const std::string& device_id) {
    auto it = by_id_.find(device_id);
    if (it == by_id_.end() || it->second.kick_pending) return;
    it->second.kick_pending = true;
    kicks_.push_back(device_id);
}

std::vector<std::string> session_registry::take_pending_kicks() {
    std::vector<std::string> out;
    for (auto& id : kicks_) {
        auto it = by_id_.find(id);
        if (it == by_id_.end() || !it->second.kick_pending) continue;
        it->second.kick_pending = false;
        if (it->second.online) out.push_back(std::move(id));
    }
    kicks_.clear();
    return out;
}

}  // namespace devicegate
