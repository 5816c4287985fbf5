// libFuzzer target: the per-CA CRL state fed a sequence of deliveries from several sources,
// as hostile CRL files and URLs would deliver them. Each record is
//   [source id: 1 byte][seconds since the previous record: 1 byte][length: 2 bytes, big endian][bytes]
// and goes through the signature precheck, the parser and crl_state::offer. Invariants: a CA's
// CRL, once in force, never goes away, and never goes back to an older version.
#include "devicegate/crl_der.hpp"
#include "devicegate/crl_state.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

using namespace devicegate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto trust = tenant_trust::load(std::string(DEVICEGATE_TEST_PKI) + "/subca-a.crt",
                                           std::string(DEVICEGATE_TEST_PKI) + "/ica.crt",
                                           std::string(DEVICEGATE_TEST_PKI) + "/root.crt");
    crl_state state(trust, {});
    std::time_t now = 1'800'000'000;
    std::array<std::optional<crl_version>, 3> seen;
    std::string_view in(reinterpret_cast<const char*>(data), size);
    while (in.size() >= 4) {
        const std::string source = "source-" + std::to_string(static_cast<unsigned char>(in[0]) % 4);
        now += static_cast<unsigned char>(in[1]);
        const std::size_t len = std::min<std::size_t>(
            (static_cast<std::size_t>(static_cast<unsigned char>(in[2])) << 8) | static_cast<unsigned char>(in[3]),
            in.size() - 4);
        const std::string_view body = in.substr(4, len);
        in.remove_prefix(4 + len);
        std::vector<ca_role> delivered;
        try {
            precheck_crl_signatures(body, source, *trust);
            for (auto& crl : parse_crls(body, source)) {
                try {
                    auto r = state.offer(crl.get(), source, now);
                    if (r.refusal == crl_refusal::none) delivered.push_back(r.issuer);
                } catch (const pki_error&) {
                }
            }
        } catch (const pki_error&) {
            continue;
        }
        state.set_delivered(source, delivered, now);
        for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) {
            auto& before = seen[static_cast<std::size_t>(role)];
            const verified_crl* current = state.current(role);
            if (before && current == nullptr) std::abort();  // a CA's CRL went away
            if (current == nullptr) continue;
            crl_version now_in_force{"", current->this_update};
            if (before && now_in_force.this_update < before->this_update) std::abort();  // went back
            before = now_in_force;
        }
        (void)state.undelivered();
    }
    return 0;
}
