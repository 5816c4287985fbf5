#pragma once
// The body of POST /devices/{id}/enroll and /renew, as the guide sends it.
#include <string>

namespace devicegate::bridge {

/// {"csr_pem": "...", "wireguard_public_key": "..." (optional, base64 X25519)}; other
/// members are ignored.
struct enroll_request {
    std::string csr_pem;
    std::string wireguard_public_key;
};
/// Throws std::invalid_argument naming the problem (never repeating the body).
enroll_request parse_enroll_request(const std::string& body);

}  // namespace devicegate::bridge
