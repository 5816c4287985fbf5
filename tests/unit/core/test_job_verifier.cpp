// job_verifier: the worker's check of a job's certificate against the tenant chain.
#include "cert_factory.hpp"
#include "devicegate/job_verifier.hpp"
#include "devicegate/redis.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>
#include <openssl/pem.h>

using namespace devicegate;

namespace {

const tenant_trust& trust() {
    static const auto t = tenant_trust::load(test::pki("subca-a.crt"), test::pki("ica.crt"), test::pki("root.crt"));
    return *t;
}

job job_for_pem(const std::string& pem, const std::string& device_id) {
    auto certs = parse_certificates(pem, "test");
    job j;
    j.cert.device_id = device_id;
    j.cert.certificate_pem = pem;
    auto digest = certificate_sha256(certs.at(0).get());
    j.cert.fingerprint_sha256 = to_hex(digest.data(), digest.size());
    j.cert.serial_hex = serial_hex(X509_get0_serialNumber(certs.at(0).get()));
    return j;
}

job job_for_file(const std::string& name, const std::string& device_id) {
    return job_for_pem(read_file(test::device_cert(name), 1 << 20), device_id);
}

const std::time_t now = std::time(nullptr);
const std::chrono::seconds skew{60};

}  // namespace

TEST_CASE("job_verifier: a job from the tenant's Sub-CA naming its own device passes", "[job_verifier]") {
    static const test::cert_factory factory(test::pki("subca-a.crt"), test::pki("subca-a.key"));
    auto j = job_for_pem(factory.issue_pem("dev-777"), "dev-777");
    CHECK(verify_job_certificate(trust(), j, now, skew).why == reason::ok);
    for (auto& c : j.cert.fingerprint_sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK(verify_job_certificate(trust(), j, now, skew).why == reason::ok);  // hex case does not matter
}

TEST_CASE("job_verifier: every forged claim is refused with its reason", "[job_verifier]") {
    CHECK(verify_job_certificate(trust(), job_for_file("dev-self", "dev-self"), now, skew).why == reason::self_signed);
    CHECK(verify_job_certificate(trust(), job_for_file("tenant-b-dev", "tenant-b-dev"), now, skew).why ==
          reason::wrong_issuer);
    CHECK(verify_job_certificate(trust(), job_for_file("foreign-dev", "foreign-dev"), now, skew).why ==
          reason::wrong_issuer);
    CHECK(verify_job_certificate(trust(), job_for_file("dev-forged", "dev-forged"), now, skew).why ==
          reason::chain_invalid);
    CHECK(verify_job_certificate(trust(), job_for_file("dev-001", "dev-002"), now, skew).why ==
          reason::client_id_mismatch);
    CHECK(verify_job_certificate(trust(), job_for_file("dev-expired", "dev-expired"), now, skew).why == reason::expired);
    CHECK(verify_job_certificate(trust(), job_for_file("dev-future", "dev-future"), now, skew).why ==
          reason::not_yet_valid);
    CHECK(verify_job_certificate(trust(), job_for_file("dev-ca", "dev-ca"), now, skew).why == reason::not_end_entity);
    CHECK(verify_job_certificate(trust(), job_for_file("dev-eku", "dev-eku"), now, skew).why == reason::wrong_eku);

    auto j = job_for_file("dev-001", "dev-001");
    REQUIRE(verify_job_certificate(trust(), j, now, skew).why == reason::ok);
    auto other_fingerprint = j;
    other_fingerprint.cert.fingerprint_sha256 = std::string(64, 'A');
    CHECK(verify_job_certificate(trust(), other_fingerprint, now, skew).why == reason::bad_certificate);
    auto other_serial = j;
    other_serial.cert.serial_hex = "0A7A";
    CHECK(verify_job_certificate(trust(), other_serial, now, skew).why == reason::bad_certificate);
    auto two = j;
    two.cert.certificate_pem += two.cert.certificate_pem;
    CHECK(verify_job_certificate(trust(), two, now, skew).why == reason::bad_certificate);
    auto garbage = j;
    garbage.cert.certificate_pem = "garbage";
    CHECK(verify_job_certificate(trust(), garbage, now, skew).why == reason::bad_certificate);
}

TEST_CASE("redis URLs name an ACL user", "[job_verifier][redis]") {
    auto o = redis_options::parse_url("redis://devicegate-worker:s3cret@redis:6379/1");
    CHECK(o.username == "devicegate-worker");
    CHECK(o.password == "s3cret");
    CHECK(o.db == 1);
    CHECK(o.describe().find("s3cret") == std::string::npos);
    CHECK(redis_options::parse_url("redis://:pw@h").username.empty());
    CHECK(redis_options::parse_url("redis://h").username.empty());
}
