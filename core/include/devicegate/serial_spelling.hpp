#pragma once
// A certificate serial's hex spelling (serial_hex) next to its serial_key, without keeping a
// second copy of what the key already says: for every RFC 5280 serial (non-negative, at most
// 20 octets) the key holds the octets and the spelling is derived when a log line, a job or
// the deny-list needs it. Only a serial the key holds as a digest (negative, longer) keeps
// its text. Per connected device this saves a heap string in the verify cache and one in the
// session record (issue 13).
#include "devicegate/pki.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace devicegate {

/// serial_hex's spelling of the serial `key` was made from, or "" when the key holds a
/// digest (make_serial_key: a negative serial or one longer than 20 octets).
inline std::string serial_hex_of(const serial_key& key) {
    const std::size_t len = key.bytes[0];
    if (len > 20) return {};
    return len == 0 ? std::string("00") : to_hex(key.bytes.data() + 1, len);
}

class serial_spelling {
public:
    serial_spelling() = default;
    /// Keeps `hex` only when serial_hex_of(key) would not give it back.
    serial_spelling(const serial_key& key, std::string_view hex) {
        if (serial_hex_of(key) != hex) odd_ = std::make_unique<const std::string>(hex);
    }
    // One pointer, not a shared_ptr's two: 8 bytes less in every session record, which
    // keeps it in a smaller malloc size class (issue 13). Copies are rare (odd serials rarer).
    serial_spelling(const serial_spelling& other) : odd_(copy(other.odd_)) {}
    serial_spelling& operator=(const serial_spelling& other) {
        if (this != &other) odd_ = copy(other.odd_);
        return *this;
    }
    serial_spelling(serial_spelling&&) noexcept = default;
    serial_spelling& operator=(serial_spelling&&) noexcept = default;
    ~serial_spelling() = default;

    std::string hex(const serial_key& key) const { return odd_ ? *odd_ : serial_hex_of(key); }

private:
    static std::unique_ptr<const std::string> copy(const std::unique_ptr<const std::string>& p) {
        return p ? std::make_unique<const std::string>(*p) : nullptr;
    }
    std::unique_ptr<const std::string> odd_;  // null for every conforming serial
};

}  // namespace devicegate
