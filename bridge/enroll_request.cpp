#include "enroll_request.hpp"

#include "wireguard.hpp"

#include <nlohmann/json.hpp>

#include <stdexcept>

namespace devicegate::bridge {

enroll_request parse_enroll_request(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded()) throw std::invalid_argument("the body is not JSON");
    if (!j.is_object()) throw std::invalid_argument("the body must be a JSON object");
    enroll_request out;
    auto csr = j.find("csr_pem");
    if (csr == j.end() || !csr->is_string()) throw std::invalid_argument("csr_pem (a PEM string) is required");
    out.csr_pem = csr->get<std::string>();
    if (auto wg = j.find("wireguard_public_key"); wg != j.end()) {
        if (!wg->is_string() || !is_wireguard_key(wg->get<std::string>())) {
            throw std::invalid_argument("wireguard_public_key must be a base64 WireGuard public key (32 bytes)");
        }
        out.wireguard_public_key = wg->get<std::string>();
    }
    return out;
}

}  // namespace devicegate::bridge
