// libFuzzer target: untrusted CRL bytes (a file or an HTTP body) through parsing and
// verification against the test PKI's tenant chain.
#include "devicegate/crl_der.hpp"
#include "devicegate/crl_set.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace devicegate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto trust = tenant_trust::load(std::string(DEVICEGATE_TEST_PKI) + "/subca-a.crt",
                                           std::string(DEVICEGATE_TEST_PKI) + "/ica.crt",
                                           std::string(DEVICEGATE_TEST_PKI) + "/root.crt");
    try {
        std::vector<verified_crl> crls;
        const std::string_view input(reinterpret_cast<const char*>(data), size);
        precheck_crl_signatures(input, "fuzz", *trust);  // the raw-DER walk, as for every CRL body
        for (auto& crl : parse_crls(input, "fuzz")) {
            crls.push_back(verify_crl(crl.get(), *trust, "fuzz"));
        }
        crl_set snapshot(std::move(crls), *trust, 1);
        (void)snapshot.check(serial_key{}, 0, std::chrono::seconds(0), stale_policy::deny);
    } catch (const pki_error&) {
        // refused with a reason: the expected outcome for almost every input
    }
    return 0;
}
