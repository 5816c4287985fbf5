#include "devicegate/fleet_model.hpp"

#include "devicegate/json_fields.hpp"

#include <algorithm>
#include <chrono>
#include <tuple>

namespace devicegate {

namespace {

std::int64_t int_field(const nlohmann::json& j, const char* name) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number_integer()) {
        throw std::invalid_argument(std::string("missing integer field ") + name);
    }
    return it->get<std::int64_t>();
}

bool known_address(std::string_view a) { return !a.empty() && a != "-"; }

}  // namespace

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string encode_fleet_session(const fleet_session& s) {
    // By hand (one per connect, on the broker thread): the same JSON nlohmann wrote.
    std::string out;
    out.reserve(64 + s.sid.size() + s.address.size() + s.fingerprint.size() + s.serial.size());
    out += "{\"sid\":";
    append_json_string(out, s.sid);
    out += ",\"at\":";
    out += std::to_string(s.connected_at);
    out += ",\"addr\":";
    append_json_string(out, s.address);
    out += ",\"fp\":";
    append_json_string(out, s.fingerprint);
    out += ",\"serial\":";
    append_json_string(out, s.serial);
    out += '}';
    return out;
}

fleet_session parse_fleet_session(std::string_view json) {
    auto j = parse_json_object(json);
    fleet_session s;
    s.sid = string_field(j, "sid");
    s.connected_at = int_field(j, "at");
    s.address = string_field(j, "addr");
    s.fingerprint = string_field(j, "fp");
    s.serial = string_field(j, "serial");
    if (s.sid.empty()) throw std::invalid_argument("empty sid");
    return s;
}

std::string encode_takeover(const takeover_message& m) {
    return nlohmann::json{{"device", m.device}, {"sid", m.sid},         {"broker", m.broker},
                          {"at", m.connected_at}, {"addr", m.address}, {"clone", m.clone},
                          {"refused", m.refused}}
        .dump();
}

takeover_message parse_takeover(std::string_view json) {
    auto j = parse_json_object(json);
    takeover_message m;
    m.device = string_field(j, "device");
    m.sid = string_field(j, "sid");
    m.broker = string_field(j, "broker");
    m.connected_at = int_field(j, "at");
    m.address = string_field(j, "addr");
    auto flag = [&](const char* name) {
        auto it = j.find(name);
        return it != j.end() && it->is_boolean() && it->get<bool>();
    };
    m.clone = flag("clone");
    m.refused = flag("refused");
    if (m.device.empty() || m.sid.empty()) throw std::invalid_argument("empty device or sid");
    return m;
}

bool older_session(const fleet_session& a, std::string_view a_broker, const fleet_session& b,
                   std::string_view b_broker) {
    return std::tie(a.connected_at, a_broker, a.sid) < std::tie(b.connected_at, b_broker, b.sid);
}

bool same_source(std::string_view a, std::string_view b) { return !known_address(a) || !known_address(b) || a == b; }

conflict_outcome resolve_conflict(const fleet_session& mine, std::string_view my_broker, const fleet_session& other,
                                  std::string_view other_broker, clone_policy policy) {
    conflict_outcome out;
    if (mine.sid == other.sid && my_broker == other_broker) return out;  // the same session
    out.clone = !same_source(mine.address, other.address);
    if (out.clone && policy == clone_policy::refuse) {
        out.kick_mine = out.kick_other = true;
    } else if (older_session(other, other_broker, mine, my_broker)) {
        out.kick_other = true;
    } else {
        out.kick_mine = true;
    }
    return out;
}

std::optional<std::int64_t> broker_view::number(const char* field) const {
    auto it = fields.find(field);
    if (it == fields.end()) return std::nullopt;
    try {
        std::size_t used = 0;
        auto v = std::stoll(it->second, &used);
        if (used != it->second.size()) return std::nullopt;
        return v;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::vector<broker_view> load_brokers(redis_connection& redis, const redis_model& model) {
    auto listed = reply_strings(redis.command({"ZRANGE", model.brokers(), "0", "-1", "WITHSCORES"}).get(),
                                model.brokers() + " (expected a sorted set)");
    std::vector<broker_view> out;
    std::vector<std::vector<std::string>> reads;
    for (std::size_t i = 0; i + 1 < listed.size(); i += 2) {
        broker_view b;
        b.id = listed[i];
        try {
            b.live_until = static_cast<std::int64_t>(std::stod(listed[i + 1]));
        } catch (const std::exception&) {
            throw redis_data_error(model.brokers() + ": score \"" + listed[i + 1] + "\" is not a number");
        }
        reads.push_back({"HGETALL", model.broker(b.id)});
        out.push_back(std::move(b));
    }
    auto replies = redis.pipeline(reads);
    for (std::size_t i = 0; i < out.size(); ++i) out[i].fields = reply_hash(replies[i].get(), reads[i][1]);
    std::sort(out.begin(), out.end(), [](const broker_view& a, const broker_view& b) { return a.id < b.id; });
    return out;
}

std::vector<std::string> live_brokers(redis_connection& redis, const redis_model& model, std::int64_t now_ms) {
    auto ids = reply_strings(
        redis.command({"ZRANGEBYSCORE", model.brokers(), "(" + std::to_string(now_ms), "+inf"}).get(),
        model.brokers() + " (expected a sorted set)");
    std::sort(ids.begin(), ids.end());
    return ids;
}

std::vector<device_location> locate_device(redis_connection& redis, const redis_model& model,
                                           const std::string& device_id, std::int64_t now_ms) {
    auto brokers = live_brokers(redis, model, now_ms);
    std::vector<std::vector<std::string>> reads;
    for (const auto& b : brokers) reads.push_back({"HGET", model.sessions(b), device_id});
    auto replies = redis.pipeline(reads);
    std::vector<device_location> out;
    for (std::size_t i = 0; i < brokers.size(); ++i) {
        auto value = reply_optional_string(replies[i].get(), reads[i][1]);
        if (!value) continue;
        try {
            out.push_back({brokers[i], parse_fleet_session(*value)});
        } catch (const std::invalid_argument& e) {
            throw redis_data_error(reads[i][1] + " " + device_id + ": " + e.what());
        }
    }
    return out;
}

}  // namespace devicegate
