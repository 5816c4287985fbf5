#pragma once
// Parsing of certificates and CRLs from untrusted bytes (PEM or DER), and the small
// value types the rest of the core uses for them.
#include "devicegate/ossl.hpp"

#include <array>
#include <compare>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate {

/// Any failure to read or parse PKI material; the message names the source and the cause.
struct pki_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr std::size_t max_certificate_file_bytes = 1u << 20;  // 1 MiB
inline constexpr std::size_t max_crl_file_bytes = 512u << 20;        // 512 MiB (~10 M entries)

/// Reads a whole regular file; throws pki_error for a missing, unreadable, empty or
/// oversized file. Only for background threads and start-up.
std::string read_file(const std::string& path, std::size_t max_bytes);

/// Writes all of `data` to `fd`, going on after short writes and EINTR: 0, or the errno that
/// stopped it (some of `data` may be written then).
int write_all(int fd, std::string_view data) noexcept;

/// Replaces `path` atomically and durably: `path`.tmp is written, fsynced and only then
/// renamed over it, so a reader (the next start) sees the old file or the new one, never a
/// part; the directory is fsynced too, so the rename survives a power loss. "" or the error
/// naming the file and the cause; on an error `path` is untouched. `mode` for a new file.
std::string write_atomically(const std::string& path, std::string_view data, mode_t mode = 0600);
/// fsyncs the directory that holds `path` (a rename or a new file in it durable); 0 or errno.
int fsync_parent_directory(const std::string& path) noexcept;

/// One or more PEM certificates, or exactly one DER certificate with nothing after it.
std::vector<x509_ptr> parse_certificates(std::string_view data, std::string_view source);
/// One or more PEM CRLs, or exactly one DER CRL with nothing after it.
std::vector<x509_crl_ptr> parse_crls(std::string_view data, std::string_view source);

/// A certificate serial number as a fixed-size, totally ordered key: byte 0 is the
/// length of the big-endian magnitude (0..20, per RFC 5280 section 4.1.2.2), the rest the
/// magnitude, zero padded. Non-conforming serials (longer than 20 octets, or negative)
/// are keyed by a SHA-256 prefix with a marker length byte so they still compare exactly.
struct serial_key {
    std::array<unsigned char, 21> bytes{};
    auto operator<=>(const serial_key&) const = default;
    bool operator==(const serial_key&) const = default;
};
serial_key make_serial_key(const ASN1_INTEGER* serial);
struct serial_key_hash {
    std::size_t operator()(const serial_key& k) const noexcept {
        return std::hash<std::string_view>{}(
            std::string_view(reinterpret_cast<const char*>(k.bytes.data()), k.bytes.size()));
    }
};
/// Upper-case hex of the serial (as `openssl x509 -serial` prints it), "-" for none.
std::string serial_hex(const ASN1_INTEGER* serial);
/// An operator's or a CA's spelling of a serial ("0x0a:7a:5e", "0A7A5E") as serial_hex
/// writes it: upper case, no separators, whole bytes, no leading zero bytes; a negative
/// serial (which RFC 5280 forbids but OpenSSL accepts) keeps serial_hex's leading "-"
/// ("-05"). nullopt for anything else (and beyond 64 bytes, and "-00").
std::optional<std::string> normalize_serial_hex(std::string_view text);
/// A serial hex (normalized) as the key the session registry and the CRLs use.
std::optional<serial_key> serial_key_from_hex(std::string_view hex);

using sha256_digest = std::array<unsigned char, 32>;
struct sha256_hash {
    std::size_t operator()(const sha256_digest& d) const noexcept {
        std::size_t h;
        static_assert(sizeof h <= sizeof d);
        std::memcpy(&h, d.data(), sizeof h);  // already uniformly distributed
        return h;
    }
};
sha256_digest certificate_sha256(X509* cert);
/// Upper-case hex.
std::string to_hex(const unsigned char* data, std::size_t size);
/// The one spelling of a certificate's SHA-256 fingerprint outside the process: lower-case
/// hex, no separators (as the first-connect jobs have always carried it).
std::string fingerprint_hex(const sha256_digest& digest);
/// Standard base64 with padding (RFC 4648 section 4), for HTTP Basic credentials and the like.
std::string base64_encode(std::string_view data);

/// Seconds since the epoch for an ASN1_TIME; throws pki_error if it cannot be converted.
std::time_t to_time_t(const ASN1_TIME* t);

/// The http(s) URIs of a certificate's CRL Distribution Points.
std::vector<std::string> crl_distribution_point_urls(X509* cert);

/// The subject's single line form ("CN=..., O=...") for log lines.
std::string subject_line(X509* cert);
/// A distinguished name on one line, as subject_line prints it (e.g. a certificate's issuer).
std::string name_line(const X509_NAME* name);

}  // namespace devicegate
