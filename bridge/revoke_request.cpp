#include "revoke_request.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>

namespace devicegate::bridge {

namespace {

/// An RFC 5280 CRLReason (0..10; 7 is not assigned) from a JSON integer. Compared as the
/// 64-bit value JSON holds: get<int>() would wrap 4294967297 to 1 and take it.
std::optional<int> crl_reason(const nlohmann::json& v) {
    std::int64_t n = -1;
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u > 10) return std::nullopt;
        n = static_cast<std::int64_t>(u);
    } else if (v.is_number_integer()) {
        n = v.get<std::int64_t>();
    }
    if (n < 0 || n > 10 || n == 7) return std::nullopt;
    return static_cast<int>(n);
}

}  // namespace

revoke_request parse_revoke_request(const std::string& body) {
    revoke_request out;
    if (body.empty()) return out;
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (!j.is_object()) throw std::invalid_argument("the body must be a JSON object");
    if (auto why = j.find("reason"); why != j.end()) {
        if (!why->is_string()) throw std::invalid_argument("reason must be a string");
        out.reason = why->get<std::string>().substr(0, 200);
    }
    if (auto code = j.find("reason_code"); code != j.end()) {
        const auto parsed = crl_reason(*code);
        if (!parsed) throw std::invalid_argument("reason_code must be an RFC 5280 CRLReason 0..10 (not 7)");
        out.reason_code = *parsed;
    }
    if (auto d = j.find("decommission"); d != j.end()) {
        if (!d->is_boolean()) throw std::invalid_argument("decommission must be true or false");
        out.decommission = d->get<bool>();
    }
    return out;
}

}  // namespace devicegate::bridge
