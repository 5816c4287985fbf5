// libFuzzer target: the worker's verification of a job's certificate (job_verifier) with the
// test PKI's tenant chain. The first byte picks the shape: a whole job payload as read from
// the stream, or a certificate (PEM or DER) wrapped in an otherwise consistent job, so the
// chain checks are reached and not only the JSON and fingerprint checks.
#include "devicegate/job.hpp"
#include "devicegate/job_verifier.hpp"
#include "devicegate/pki.hpp"

#include <openssl/pem.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace devicegate;

namespace {

const tenant_trust& trust() {
    static const auto t = tenant_trust::load(DEVICEGATE_TEST_PKI "/subca-a.crt", DEVICEGATE_TEST_PKI "/ica.crt",
                                             DEVICEGATE_TEST_PKI "/root.crt");
    return *t;
}

/// A job around `body` (PEM text, or DER turned into PEM), with its real fingerprint and serial.
void verify_wrapped(std::string_view body) {
    job j;
    j.cert.certificate_pem = std::string(body);
    const unsigned char* p = reinterpret_cast<const unsigned char*>(body.data());
    x509_ptr der(d2i_X509(nullptr, &p, static_cast<long>(body.size())));
    if (der) {
        bio_ptr bio(BIO_new(BIO_s_mem()));
        PEM_write_bio_X509(bio.get(), der.get());
        char* pem = nullptr;
        long n = BIO_get_mem_data(bio.get(), &pem);
        j.cert.certificate_pem.assign(pem, static_cast<std::size_t>(n));
    }
    try {
        auto certs = parse_certificates(j.cert.certificate_pem, "fuzz");
        if (!certs.empty()) {
            auto digest = certificate_sha256(certs[0].get());
            j.cert.fingerprint_sha256 = to_hex(digest.data(), digest.size());
            j.cert.serial_hex = serial_hex(X509_get0_serialNumber(certs[0].get()));
            std::string detail;
            if (extract_device_id(certs[0].get(), j.cert.device_id, detail) != reason::ok) j.cert.device_id = "dev-001";
        }
    } catch (const std::exception&) {
    }
    (void)verify_job_certificate(trust(), j, 1800000000, std::chrono::seconds(60));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] & 1) {
        verify_wrapped(rest);
        return 0;
    }
    try {
        job j = parse_job(rest);
        (void)verify_job_certificate(trust(), j, 1800000000, std::chrono::seconds(60));
    } catch (const std::invalid_argument&) {
    }
    return 0;
}
