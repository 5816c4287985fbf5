#include "enroll_tokens.hpp"

#include "bridge_cli.hpp"
#include "devicegate/config.hpp"
#include "devicegate/device_id.hpp"
#include "devicegate/pki.hpp"
#include "jwt.hpp"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <ostream>

namespace devicegate::bridge {

namespace {

constexpr std::string_view token_prefix = "dgt_";

}  // namespace

std::string token_key(const redis_model& model, std::string_view token) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
    return model.prefix + "enroll:token:" + to_hex(digest, sizeof digest);
}

std::string create_enroll_token(redis_connection& redis, const redis_model& model, const std::string& device_id,
                                std::chrono::milliseconds ttl) {
    unsigned char random[32];
    if (RAND_bytes(random, sizeof random) != 1) throw std::runtime_error("no randomness for a token");
    const std::string token = std::string(token_prefix) + base64url(std::string_view(reinterpret_cast<const char*>(random), sizeof random));
    auto reply = redis.command({"SET", token_key(model, token), device_id, "PX", std::to_string(ttl.count()), "NX"});
    if (reply->type != REDIS_REPLY_STATUS) throw redis_data_error("SET of the token refused");
    return token;
}

std::string_view to_string(token_check c) noexcept {
    switch (c) {
        case token_check::ok: return "ok";
        case token_check::missing: return "token_missing";
        case token_check::unknown: return "token_unknown_used_or_expired";
        case token_check::wrong_device: return "token_for_another_device";
    }
    return "unknown";
}

token_check consume_enroll_token(redis_connection& redis, const redis_model& model, std::string_view token,
                                 const std::string& device_id) {
    if (token.empty()) return token_check::missing;
    // Anything that is not one of ours cannot be in Redis: no need to ask.
    if (token.size() > 128 || token.substr(0, token_prefix.size()) != token_prefix) return token_check::unknown;
    auto reply = redis.command({"GETDEL", token_key(model, token)});
    if (reply->type == REDIS_REPLY_NIL) return token_check::unknown;
    const std::string bound = reply_string(reply.get(), "GETDEL token");
    return bound == device_id ? token_check::ok : token_check::wrong_device;
}

int enroll_token_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    static const std::string usage =
        "usage: devicegate-ctl enroll-token DEVICE-ID [--ttl 24h] [--redis URL] [--prefix PREFIX]\n"
        "  prints a one-time enrollment token bound to DEVICE-ID (the device sends it as\n"
        "  Authorization: Bearer TOKEN); --ttl: 1m..720h, default 24h\n";
    return run_redis_command(
        args, out, err, usage, 1,
        [](redis_connection& redis, const redis_model& model, const cli_args& p, std::ostream& o) {
            const std::string& id = p.positional[0];
            if (!is_safe_device_id(id)) {
                throw cli_usage_error("\"" + id + "\" is not a device id ([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})");
            }
            std::chrono::milliseconds ttl = default_token_ttl;
            if (auto it = p.values.find("--ttl"); it != p.values.end()) {
                try {
                    ttl = parse_duration(it->second);
                } catch (const std::exception&) {
                    throw cli_usage_error("--ttl needs a duration such as 30m or 24h");
                }
                if (ttl < std::chrono::minutes(1) || ttl > max_token_ttl) throw cli_usage_error("--ttl must be 1m..720h");
            }
            o << create_enroll_token(redis, model, id, ttl) << "\n";
            return static_cast<int>(cli_ok);
        },
        {"--ttl"});
}

}  // namespace devicegate::bridge
