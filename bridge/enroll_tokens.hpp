#pragma once
// One-time enrollment tokens. The token is 32 random bytes (base64url, prefix "dgt_"); Redis
// holds only its SHA-256, bound to one device id, with an expiry (PX), and a use deletes it
// in the same transaction (MULTI PTTL GETDEL EXEC), so two concurrent enrollments cannot both
// use it. When the enrollment then fails for a reason the answer calls retryable (503/502),
// the token is put back with the lifetime it had left (SET ... PX NX): a retry can use it.
//
//   <p>enroll:token:<sha256 hex>   STRING device id, expiring
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate::bridge {

inline constexpr std::chrono::hours default_token_ttl{24};
inline constexpr std::chrono::hours max_token_ttl{24 * 30};

std::string token_key(const redis_model& model, std::string_view token);

/// Stores a new token for `device_id` (a safe id) and returns it; the only time it is seen.
std::string create_enroll_token(redis_connection& redis, const redis_model& model, const std::string& device_id,
                                std::chrono::milliseconds ttl);

enum class token_check { ok, missing, unknown, wrong_device };
std::string_view to_string(token_check c) noexcept;

struct token_use {
    token_check check = token_check::missing;
    /// The lifetime the token had left when it was used (PTTL); negative: none (no expiry).
    std::chrono::milliseconds remaining{-1};
};

/// Uses the token: ok only when it exists, has not expired and is bound to `device_id`. A
/// token presented for another device is used up too (it has leaked). Throws redis_io_error.
token_use consume_enroll_token(redis_connection& redis, const redis_model& model, std::string_view token,
                               const std::string& device_id);

/// Puts a token used `elapsed` ago back for `device_id` with what is left of the lifetime it
/// had (`used.remaining`), unless a key for it exists already (NX). False when its lifetime
/// ran out meanwhile, or NX found a key. Throws redis_io_error / redis_data_error.
bool restore_enroll_token(redis_connection& redis, const redis_model& model, std::string_view token,
                          const std::string& device_id, const token_use& used, std::chrono::milliseconds elapsed);

}  // namespace devicegate::bridge
