#include "devicegate/job_verifier.hpp"

#include "devicegate/pki.hpp"

namespace devicegate {

namespace {

job_verdict refuse(reason why, std::string detail) { return {why, std::move(detail)}; }

}  // namespace

job_verdict verify_job_certificate(const tenant_trust& trust, const job& j, std::time_t now, std::chrono::seconds skew) {
    std::vector<x509_ptr> certs;
    try {
        certs = parse_certificates(j.cert.certificate_pem, "certificate_pem");
    } catch (const std::exception&) {
        return refuse(reason::bad_certificate, "certificate_pem is not a PEM certificate");
    }
    if (certs.size() != 1) return refuse(reason::bad_certificate, "certificate_pem must hold exactly one certificate");
    X509* leaf = certs[0].get();
    const auto digest = certificate_sha256(leaf);
    if (!same_fingerprint(fingerprint_hex(digest), j.cert.fingerprint_sha256)) {
        return refuse(reason::bad_certificate, "fingerprint_sha256 is not the certificate's SHA-256");
    }
    // The broker's own check: issuer pinning, X509_verify_cert, end entity, EKU, device id.
    verify_outcome outcome = trust.verify(leaf);
    if (outcome.why != reason::ok || !outcome.cert) {
        return refuse(outcome.why == reason::ok ? reason::internal_error : outcome.why,
                      outcome.detail.empty() ? "the certificate did not verify" : outcome.detail);
    }
    if (outcome.cert->device_id != j.cert.device_id) {
        return refuse(reason::client_id_mismatch, "the job's device_id is not the certificate's device id (CN)");
    }
    if (normalize_serial_hex(j.cert.serial_hex) != outcome.serial_hex) {  // in serial_hex()'s spelling
        return refuse(reason::bad_certificate, "the job's serial is not the certificate's serial");
    }
    job_verdict out;
    out.why = trust.check_times(*outcome.cert, now, skew, out.detail);
    return out;
}

}  // namespace devicegate
