#include "devicegate/revocation_store.hpp"

#include "devicegate/job.hpp"

#include <nlohmann/json.hpp>

namespace devicegate {

std::string encode_revocation_entry(const revocation_entry& entry) {
    nlohmann::json j{{"reason", entry.reason}};
    if (entry.at) j["at"] = *entry.at;
    if (!entry.by.empty()) j["by"] = entry.by;
    return j.dump();
}

std::optional<revocation_entry> parse_revocation_entry(std::string_view json) {
    const auto j = nlohmann::json::parse(json, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    revocation_entry out;
    if (auto it = j.find("reason"); it != j.end() && it->is_string()) out.reason = it->get<std::string>();
    if (auto it = j.find("at"); it != j.end() && it->is_number_integer()) out.at = it->get<std::int64_t>();
    if (auto it = j.find("by"); it != j.end() && it->is_string()) out.by = it->get<std::string>();
    return out;
}

revocation_store::revocation_store(redis_connection& redis, redis_model model) : redis_(redis), model_(std::move(model)) {}

std::string revocation_store::key_of(const revocation_target& target) const {
    return target.serial ? model_.revoked_serials() : model_.revoked_devices();
}

long long revocation_store::announce(const denylist_change& change) {
    auto reply = redis_.command({"PUBLISH", model_.revocations_channel(), encode_denylist_change(change)});
    return reply_integer(reply.get(), "PUBLISH " + model_.revocations_channel());
}

long long revocation_store::revoke(const revocation_target& target, const revocation_entry& entry) {
    const std::string key = key_of(target);
    reply_integer(redis_.command({"HSET", key, target.value, encode_revocation_entry(entry)}).get(), "HSET " + key);
    return announce({true, target.serial, target.value});
}

replication_status revocation_store::wait_replicated(std::chrono::milliseconds timeout) {
    return devicegate::wait_replicated(redis_, timeout);
}

std::optional<long long> revocation_store::unrevoke(const revocation_target& target) {
    const std::string key = key_of(target);
    if (reply_integer(redis_.command({"HDEL", key, target.value}).get(), "HDEL " + key) == 0) return std::nullopt;
    return announce({false, target.serial, target.value});
}

std::string revocation_store::enqueue_decommission(const std::string& device_id, const std::string& reason,
                                                   std::int64_t at) {
    const std::string key = model_.device(device_id);
    auto device = reply_hash(redis_.command({"HGETALL", key}).get(), key);
    auto known = [&](const char* name) {
        auto it = device.find(name);
        return it == device.end() ? std::string() : it->second;
    };
    const std::string job =
        encode_decommission_job(device_id, known(device_field::serial), known(device_field::fingerprint), reason, at);
    auto added = redis_.command({"XADD", model_.jobs(), "*", job_field::type,
                                 std::string(to_string(job_type::decommission)), job_field::job, job});
    return reply_string(added.get(), "XADD " + model_.jobs());
}

std::optional<std::string> revocation_store::entry(const revocation_target& target) {
    const std::string key = key_of(target);
    return reply_optional_string(redis_.command({"HGET", key, target.value}).get(), key);
}

bool revocation_store::denies(const std::string& device_id, const std::string& serial_hex) {
    return entry({false, device_id}).has_value() || entry({true, serial_hex}).has_value();
}

std::map<std::string, std::string> revocation_store::entries(bool serials) {
    const std::string key = serials ? model_.revoked_serials() : model_.revoked_devices();
    return reply_hash(redis_.command({"HGETALL", key}).get(), key);
}

revocation_store::snapshot revocation_store::load() {
    snapshot out;
    for (bool serials : {true, false}) {
        const std::string key = serials ? model_.revoked_serials() : model_.revoked_devices();
        auto values = reply_strings(redis_.command({"HKEYS", key}).get(), key + " (expected a hash)");
        for (auto& value : values) {
            if (!serials) {
                out.list.devices.insert(std::move(value));
            } else if (auto hex = normalize_serial_hex(value)) {
                out.list.serials.insert(*hex);
            } else {
                out.malformed.push_back({key, std::move(value)});
            }
        }
    }
    return out;
}

revocation_subscription::revocation_subscription(const redis_options& options, const redis_model& model)
    : sub_(options), channel_(model.revocations_channel()) {
    sub_.append({"SUBSCRIBE", channel_});
    for (auto deadline = std::chrono::steady_clock::now() + options.command_timeout;;) {
        if (sub_.next_reply(std::chrono::milliseconds(100))) break;
        if (std::chrono::steady_clock::now() > deadline) throw redis_io_error("SUBSCRIBE not confirmed");
    }
}

std::optional<std::string> revocation_subscription::next_change(std::chrono::milliseconds timeout) {
    auto reply = sub_.next_reply(timeout);
    if (!reply) return std::nullopt;
    auto message = reply_pubsub_message(reply->get());
    if (!message || message->channel != channel_) return std::nullopt;  // confirmations and the like
    return std::move(message->payload);
}

}  // namespace devicegate
