#pragma once
// A first-connect job as the plugin writes it, for a certificate issued in memory by the test
// PKI's Sub-CA A: what the worker registers, and what reconcile's tests leave in Redis.
#include "cert_factory.hpp"
#include "devicegate/job.hpp"
#include "test_pki.hpp"

#include <string>

namespace devicegate::test {

inline job issued_job(const std::string& id, job_type type = job_type::first_connect) {
    static const cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    device_certificate c;
    c.device_id = id;
    c.certificate_pem = factory.issue_pem(id);
    auto certs = parse_certificates(c.certificate_pem, "test");
    c.fingerprint_sha256 = fingerprint_hex(certificate_sha256(certs.at(0).get()));
    c.serial_hex = serial_hex(X509_get0_serialNumber(certs.at(0).get()));
    c.first_seen = 1795000000;
    c.broker_id = "b1";
    return parse_job(encode_job(c, type));
}

}  // namespace devicegate::test
