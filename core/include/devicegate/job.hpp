#pragma once
// First-connect jobs: what the plugin hands to Redis and the worker consumes.
#include <cstdint>
#include <string>
#include <string_view>

namespace devicegate {

inline constexpr int job_schema_version = 1;

/// What the broker knows about an admitted device's certificate.
struct device_certificate {
    std::string device_id;
    std::string serial_hex;
    std::string fingerprint_sha256;  // fingerprint_hex (pki.hpp) of the leaf DER's SHA-256
    std::string certificate_pem;
    std::int64_t first_seen = 0;     // unix seconds, when this broker admitted it
    std::string broker_id;
    /// The broker thread hands over the leaf's DER instead of certificate_pem; the job
    /// producer's thread writes certificate_pem from it (pem_from_der) and clears it. (Last,
    /// so that positional initializers of the fields above still work.)
    std::string certificate_der;
};

/// decommission: the device was revoked and an operator asked to remove it from ThingsBoard
/// and hawkBit (docs/worker.md "Decommission"). It carries no certificate: a revoked device's
/// certificate may be anything, so the worker checks the deny-list instead.
enum class job_type { first_connect, certificate_changed, decommission };
std::string_view to_string(job_type t) noexcept;

/// {"type":..,"schema":1,"device_id":..,"serial":..,"fingerprint_sha256":..,
///  "certificate_pem":..,"first_seen":..,"broker_id":..}, always starting with {"type":"<type>"
/// (the first-connect script derives the certificate_changed job from the first_connect one).
std::string encode_job(const device_certificate& cert, job_type type);

/// A DER certificate as PEM_write_bio_X509 writes it (64 base64 characters per line).
std::string pem_from_der(std::string_view der);

/// A job as the worker reads it from the stream.
struct job {
    job_type type = job_type::first_connect;
    device_certificate cert;  // decommission: device_id, serial_hex and fingerprint_sha256 ("" if unknown)
    std::string reason;              // decommission only: the revocation's reason
    std::int64_t requested_at = 0;   // decommission only: unix seconds
};

/// {"schema":1,"type":"decommission","device_id":..,"serial":..,"fingerprint_sha256":..,
///  "reason":..,"requested_at":..}. The mode (delete or keep) is the worker's configuration.
std::string encode_decommission_job(const std::string& device_id, const std::string& serial_hex,
                                    const std::string& fingerprint_sha256, const std::string& reason,
                                    std::int64_t requested_at);
/// Parses and checks a job payload: schema 1, a known type, a safe device id, and (except for
/// decommission, which carries no certificate) exactly one
/// PEM certificate whose SHA-256 is fingerprint_sha256 (in either letter case; the job
/// returned carries fingerprint_hex's). Throws std::invalid_argument naming the problem
/// (never repeating the payload).
job parse_job(std::string_view payload);

/// Two fingerprint spellings of the same digest: hex compared without regard to case, as
/// stored values and hand-made jobs may be upper case (fingerprint_hex writes lower case).
bool same_fingerprint(std::string_view a, std::string_view b) noexcept;

/// The journal's line format (the certificate without a job type).
std::string encode_journal_line(const device_certificate& cert);
/// Throws std::invalid_argument naming the problem.
device_certificate parse_journal_line(std::string_view line);

}  // namespace devicegate
