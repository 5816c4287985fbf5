#include "wireguard.hpp"

#include "bridge_config.hpp"
#include "devicegate/pki.hpp"

#include <arpa/inet.h>
#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include <map>
#include <ostream>

namespace devicegate::bridge {

std::uint32_t address_pool::capacity() const noexcept {
    const std::uint64_t size = std::uint64_t{1} << (32 - prefix);
    return static_cast<std::uint32_t>(size - 3);
}

std::string address_pool::address(std::uint32_t slot) const {
    in_addr a{};
    a.s_addr = htonl(network + 1 + slot);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

address_pool parse_pool(const std::string& cidr) {
    const auto slash = cidr.find('/');
    if (slash == std::string::npos) throw std::invalid_argument("no prefix length");
    in_addr a{};
    if (inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1) throw std::invalid_argument("not IPv4");
    std::size_t used = 0;
    const int prefix = std::stoi(cidr.substr(slash + 1), &used);
    if (used != cidr.size() - slash - 1 || prefix < 8 || prefix > 30) throw std::invalid_argument("prefix out of range");
    address_pool p;
    p.prefix = prefix;
    const std::uint32_t mask = ~std::uint32_t{0} << (32 - prefix);
    p.network = ntohl(a.s_addr);
    if ((p.network & ~mask) != 0) throw std::invalid_argument("host bits set");
    return p;
}

namespace {

std::optional<std::string> base64_decode_32(std::string_view text) {
    if (text.size() != 44 || text[43] != '=' || text[42] == '=') return std::nullopt;
    unsigned char out[33];
    const int n = EVP_DecodeBlock(out, reinterpret_cast<const unsigned char*>(text.data()), 44);
    if (n != 33) return std::nullopt;  // EVP_DecodeBlock counts the padding byte
    return std::string(reinterpret_cast<const char*>(out), 32);
}

std::string raw_key(EVP_PKEY* key, bool private_part) {
    unsigned char buf[32];
    std::size_t len = sizeof buf;
    const int ok = private_part ? EVP_PKEY_get_raw_private_key(key, buf, &len) : EVP_PKEY_get_raw_public_key(key, buf, &len);
    if (ok != 1 || len != 32) throw std::runtime_error("cannot read an X25519 key");
    return base64_encode(std::string_view(reinterpret_cast<const char*>(buf), len));
}

// KEYS[1] slots hash, KEYS[2] counter; ARGV[1] device id, ARGV[2] capacity.
// Returns the slot (existing or new), or -1 when the pool is exhausted.
constexpr const char* allocate_script = R"(
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s then return tonumber(s) end
local n = redis.call('INCR', KEYS[2])
if n > tonumber(ARGV[2]) then
  redis.call('DECR', KEYS[2])
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], n)
return n
)";

// KEYS[1] peers (id -> JSON), KEYS[2] owners (public key -> id); ARGV[1] id, ARGV[2] public
// key, ARGV[3] the peer's JSON. Returns the other device that has the key, or '' (recorded).
// The owners hash is built from the peers once when it is missing (peers recorded before it
// existed); an entry counts only while its device's peer still has that key.
constexpr const char* record_peer_script = R"(
local function key_of(peer)
  if not peer then return nil end
  local ok, p = pcall(cjson.decode, peer)
  if ok and type(p) == 'table' and type(p.public_key) == 'string' then return p.public_key end
  return nil
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local k = key_of(all[i + 1])
    if k then redis.call('HSETNX', KEYS[2], k, all[i]) end
  end
end
local owner = redis.call('HGET', KEYS[2], ARGV[2])
if owner and owner ~= ARGV[1] and key_of(redis.call('HGET', KEYS[1], owner)) == ARGV[2] then return owner end
local old = key_of(redis.call('HGET', KEYS[1], ARGV[1]))
if old and old ~= ARGV[2] and redis.call('HGET', KEYS[2], old) == ARGV[1] then redis.call('HDEL', KEYS[2], old) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
return ''
)";

}  // namespace

bool is_wireguard_key(std::string_view text) noexcept { return base64_decode_32(text).has_value(); }

wireguard_keypair generate_wireguard_keypair() {
    evp_pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
    if (!key) throw std::runtime_error("X25519 key generation failed");
    return {raw_key(key.get(), true), raw_key(key.get(), false)};
}

std::optional<std::string> wireguard_public_key(std::string_view private_key_base64) {
    auto raw = base64_decode_32(private_key_base64);
    if (!raw) return std::nullopt;
    evp_pkey_ptr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr,
                                                  reinterpret_cast<const unsigned char*>(raw->data()), raw->size()));
    if (!key) return std::nullopt;
    return raw_key(key.get(), false);
}

std::optional<std::uint32_t> allocate_slot(redis_connection& redis, const wireguard_keys& keys, const std::string& device_id,
                                           std::uint32_t capacity) {
    auto reply = redis.command({"EVAL", allocate_script, "2", keys.slots, keys.next, device_id, std::to_string(capacity)});
    const long long slot = reply_integer(reply.get(), "wireguard address script");
    if (slot < 0) return std::nullopt;
    if (slot == 0 || slot > capacity) throw redis_data_error(keys.slots + ": slot out of the pool");
    return static_cast<std::uint32_t>(slot);
}

std::optional<std::string> record_peer(redis_connection& redis, const wireguard_keys& keys, const std::string& device_id,
                                       const std::string& public_key, const std::string& address) {
    nlohmann::json peer{{"public_key", public_key}, {"address", address}};
    auto reply =
        redis.command({"EVAL", record_peer_script, "2", keys.peers, keys.owners, device_id, public_key, peer.dump()});
    std::string owner = reply_string(reply.get(), "wireguard peer script");
    if (owner.empty()) return std::nullopt;
    return owner;
}

std::string device_config(const wireguard_settings& s, const std::string& address, const std::string& private_key) {
    std::string out = "[Interface]\n";
    if (!private_key.empty()) out += "PrivateKey = " + private_key + "\n";
    else out += "# PrivateKey: the device's own (it never left the device)\n";
    out += "Address = " + address + "/32\n";
    if (!s.dns.empty()) out += "DNS = " + s.dns + "\n";
    out += "\n[Peer]\nPublicKey = " + s.gateway_public_key + "\nEndpoint = " + s.endpoint + "\nAllowedIPs = " +
           s.allowed_ips + "\n";
    if (s.keepalive > 0) out += "PersistentKeepalive = " + std::to_string(s.keepalive) + "\n";
    return out;
}

std::string peers_file(redis_connection& redis, const wireguard_keys& keys) {
    auto reply = redis.command({"HGETALL", keys.peers});
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) throw redis_data_error(keys.peers + ": not a hash");
    std::map<std::string, std::string> peers;  // sorted by device id: a stable file
    for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
        peers[reply_string(reply->element[i], keys.peers)] = reply_string(reply->element[i + 1], keys.peers);
    }
    std::string out = "# DeviceGate WireGuard peers (" + std::to_string(peers.size()) + "), for the tenant gateway\n";
    for (const auto& [id, json] : peers) {
        nlohmann::json p = nlohmann::json::parse(json, nullptr, false);
        if (!p.is_object() || !p.contains("public_key") || !p["public_key"].is_string() || !p.contains("address") ||
            !p["address"].is_string() || !is_wireguard_key(p["public_key"].get<std::string>())) {
            throw redis_data_error(keys.peers + ": the entry of " + id + " is not DeviceGate's");
        }
        out += "\n[Peer]\n# " + id + "\nPublicKey = " + p["public_key"].get<std::string>() +
               "\nAllowedIPs = " + p["address"].get<std::string>() + "/32\n";
    }
    return out;
}

}  // namespace devicegate::bridge
