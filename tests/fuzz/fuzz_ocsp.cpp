// libFuzzer target: untrusted OCSP responses through verification, for a fixed request.
#include "devicegate/ocsp.hpp"
#include "devicegate/tenant_trust.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace devicegate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static auto trust = tenant_trust::load(std::string(DEVICEGATE_TEST_PKI) + "/subca-a.crt",
                                           std::string(DEVICEGATE_TEST_PKI) + "/ica.crt",
                                           std::string(DEVICEGATE_TEST_PKI) + "/root.crt");
    static x509_ptr leaf = [] {
        auto path = std::string(DEVICEGATE_TEST_PKI) + "/devices/dev-001.crt";
        return std::move(parse_certificates(read_file(path, max_certificate_file_bytes), path).at(0));
    }();
    static x509_stack_ptr chain = [] {
        x509_stack_ptr s(sk_X509_new_null());
        sk_X509_push(s.get(), trust->certificate(ca_role::ica));
        X509_up_ref(trust->certificate(ca_role::ica));
        return s;
    }();
    static ocsp_query query = make_ocsp_query(leaf.get(), trust->certificate(ca_role::sub_ca), false);
    try {
        (void)verify_ocsp_response(std::string_view(reinterpret_cast<const char*>(data), size), query,
                                   trust->certificate(ca_role::sub_ca), chain.get(), trust->store(), 1800000000,
                                   std::chrono::seconds(60), std::chrono::hours(1));
    } catch (const ocsp_error&) {
    }
    return 0;
}
