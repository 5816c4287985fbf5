// libFuzzer target: the bridge's untrusted inputs before anything is signed: the enroll body
// (JSON), the CSR PEM inside it (and the same bytes as a CSR directly), the device id, and
// a WireGuard public key.
#include "csr_check.hpp"
#include "devicegate/device_id.hpp"
#include "enroll_request.hpp"
#include "wireguard.hpp"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

using namespace devicegate::bridge;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string input(reinterpret_cast<const char*>(data), size);
    // The first line is the device id of the URL, the rest the body.
    const auto nl = input.find('\n');
    const std::string id = nl == std::string::npos ? "dev-1" : input.substr(0, nl);
    const std::string body = nl == std::string::npos ? input : input.substr(nl + 1);
    if (!devicegate::is_safe_device_id(id)) return 0;
    try {
        auto req = parse_enroll_request(body);
        auto r = check_csr(req.csr_pem, id);
        if (r.problem == csr_problem::ok && csr_common_name(r.csr.get()) != id) __builtin_trap();
    } catch (const std::invalid_argument&) {
    }
    auto direct = check_csr(body, id);
    if (direct.problem == csr_problem::ok && (direct.csr == nullptr || direct.key_type.empty())) __builtin_trap();
    (void)is_wireguard_key(body);
    return 0;
}
