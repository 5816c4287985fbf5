#pragma once
// WireGuard for enrolled devices: the device's own X25519 public key (preferred: its private
// key never leaves it) or a pair made here with OpenSSL; an address from the configured pool,
// allocated atomically in Redis and stable across re-enrollment; the device's wg-quick config;
// and the gateway's peer list (`devicegate-ctl wg-peers`).
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate::bridge {

struct wireguard_settings;

/// An IPv4 pool: network address and prefix length. The first host is the gateway's.
struct address_pool {
    std::uint32_t network = 0;
    int prefix = 0;
    /// Addresses devices can get: all hosts but the network, the gateway and the broadcast.
    std::uint32_t capacity() const noexcept;
    /// The address of device slot 1..capacity() ("10.80.0.2" for slot 1).
    std::string address(std::uint32_t slot) const;
};
/// "10.80.0.0/16"; prefix 8..30. Throws std::invalid_argument.
address_pool parse_pool(const std::string& cidr);

/// A WireGuard key: standard base64 of exactly 32 bytes.
bool is_wireguard_key(std::string_view text) noexcept;

struct wireguard_keypair {
    std::string private_key;  // base64; a secret: never logged
    std::string public_key;   // base64
};
/// A fresh X25519 pair (OpenSSL), in WireGuard's encoding.
wireguard_keypair generate_wireguard_keypair();
/// The public key of a base64 private key (what `wg pubkey` prints); nullopt if malformed.
std::optional<std::string> wireguard_public_key(std::string_view private_key_base64);

/// Redis keys: <p>wg:slot HASH id -> slot, <p>wg:next counter, <p>wg:peers HASH id -> JSON
/// {"public_key","address"}, <p>wg:owner HASH public key -> id (one device per key).
struct wireguard_keys {
    std::string slots, next, peers, owners;
    explicit wireguard_keys(const redis_model& m)
        : slots(m.prefix + "wg:slot"), next(m.prefix + "wg:next"), peers(m.prefix + "wg:peers"),
          owners(m.prefix + "wg:owner") {}
};

/// The device's slot: the one it had, or the next free one (one Lua script, atomic across
/// bridges). nullopt when the pool is exhausted. Throws redis_io_error / redis_data_error.
std::optional<std::uint32_t> allocate_slot(redis_connection& redis, const wireguard_keys& keys, const std::string& device_id,
                                           std::uint32_t capacity);
/// Records the device's public key and address for the gateway's peer list, unless another
/// device's peer has that public key: WireGuard keys its peers by public key, so a second
/// [Peer] with it takes over the first one's tunnel. Returns that other device's id (nothing
/// recorded), or nullopt when recorded. One Lua script: atomic across bridges.
std::optional<std::string> record_peer(redis_connection& redis, const wireguard_keys& keys, const std::string& device_id,
                                       const std::string& public_key, const std::string& address);

/// The device's wg-quick config. `private_key` empty: the device keeps its own.
std::string device_config(const wireguard_settings& s, const std::string& address, const std::string& private_key);

/// The gateway's peers as a wg-ready file, from Redis.
std::string peers_file(redis_connection& redis, const wireguard_keys& keys);

}  // namespace devicegate::bridge
