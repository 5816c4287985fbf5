#pragma once
// The optional body of POST /devices/{id}/revoke.
#include <string>

namespace devicegate::bridge {

/// {"reason": "...", "reason_code": 0..10 (not 7), "decommission": bool}, each optional; other
/// members are ignored. An empty body is the defaults.
struct revoke_request {
    std::string reason = "revoked by operator";  // cut to 200 characters
    int reason_code = 0;                         // RFC 5280 5.3.1 CRLReason: unspecified
    bool decommission = false;                   // also remove it from ThingsBoard and hawkBit
};
/// Throws std::invalid_argument naming the problem (never repeating the body).
revoke_request parse_revoke_request(const std::string& body);

}  // namespace devicegate::bridge
