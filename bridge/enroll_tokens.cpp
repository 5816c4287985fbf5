#include "enroll_tokens.hpp"

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

token_use consume_enroll_token(redis_connection& redis, const redis_model& model, std::string_view token,
                               const std::string& device_id) {
    if (token.empty()) return {token_check::missing};
    // Anything that is not one of ours cannot be in Redis: no need to ask.
    if (token.size() > 128 || token.substr(0, token_prefix.size()) != token_prefix) return {token_check::unknown};
    const std::string key = token_key(model, token);
    // One transaction: the lifetime read is the one of the value deleted.
    auto reply = redis.transaction({{"PTTL", key}, {"GETDEL", key}});
    const auto parts = reply_array(reply.get(), "PTTL+GETDEL token", 2);
    if (parts[1]->type == REDIS_REPLY_NIL) return {token_check::unknown};
    const std::string bound = reply_string(parts[1], "GETDEL token");
    const std::chrono::milliseconds remaining(reply_integer(parts[0], "PTTL token"));
    return {bound == device_id ? token_check::ok : token_check::wrong_device, remaining};
}

bool restore_enroll_token(redis_connection& redis, const redis_model& model, std::string_view token,
                          const std::string& device_id, const token_use& used, std::chrono::milliseconds elapsed) {
    std::vector<std::string> argv{"SET", token_key(model, token), device_id, "NX"};
    if (used.remaining.count() >= 0) {  // negative: the token had no expiry (not one of ctl's)
        const auto left = used.remaining - elapsed;
        if (left.count() <= 0) return false;
        argv.push_back("PX");
        argv.push_back(std::to_string(left.count()));
    }
    auto reply = redis.command(argv);
    if (reply->type == REDIS_REPLY_NIL) return false;  // NX: a key with this hash exists already
    if (reply->type != REDIS_REPLY_STATUS) throw redis_data_error("SET of the token refused: " + std::string(reply_type_name(reply.get())));
    return true;
}

}  // namespace devicegate::bridge
