// Issue 11, finding 6, through the real devicegate-worker: a job is only a claim of whoever
// wrote the stream. Its certificate must verify against the tenant chain (as at the broker),
// name the job's device and be the one fingerprinted; otherwise the job is dead-lettered
// `untrusted` before anything reaches ThingsBoard, hawkBit or the device's Redis hash.
#include "harness.hpp"

#include "devicegate/job.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/redis.hpp"

#include <catch2/catch.hpp>
#include <openssl/pem.h>

using namespace devicegate::itest;
using nlohmann::json;

namespace {

/// A job as the plugin would write it for the first certificate in `file`, claiming `device_id`.
std::string job_for(const std::string& file, const std::string& device_id) {
    auto certs = devicegate::parse_certificates(devicegate::read_file(file, 1 << 20), file);
    X509* cert = certs.at(0).get();
    devicegate::bio_ptr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), cert);
    char* pem = nullptr;
    long n = BIO_get_mem_data(bio.get(), &pem);
    devicegate::device_certificate c;
    c.device_id = device_id;
    c.certificate_pem.assign(pem, static_cast<std::size_t>(n));
    auto digest = devicegate::certificate_sha256(cert);
    c.fingerprint_sha256 = devicegate::to_hex(digest.data(), digest.size());
    c.serial_hex = devicegate::serial_hex(X509_get0_serialNumber(cert));
    c.first_seen = 1795000000;
    c.broker_id = "attacker";
    return devicegate::encode_job(c, devicegate::job_type::first_connect);
}

/// Every dead letter: claimed device id -> reason.
std::map<std::string, std::string> dead_letters(const redis_server& redis) {
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    auto reply = c.command({"XRANGE", "devicegate:jobs:dead", "-", "+"});
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* fields = reply->element[i]->element[1];
        std::map<std::string, std::string> f;
        for (std::size_t k = 0; k + 1 < fields->elements; k += 2) {
            f[fields->element[k]->str] = std::string(fields->element[k + 1]->str, fields->element[k + 1]->len);
        }
        out[f["claimed_device_id"]] = f["reason"];
    }
    return out;
}

}  // namespace

TEST_CASE("jobs whose certificate the tenant chain does not vouch for are dead-lettered untrusted; nothing is registered",
          "[integration][worker][integrity]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());

    const std::map<std::string, std::string> forged = {
        {"dev-self", pki("devices/dev-self.crt")},            // self-signed
        {"tenant-b-dev", pki("devices/tenant-b-dev.crt")},    // another tenant's Sub-CA (same ICA and Root)
        {"dev-victim", pki("devices/dev-001.crt")},           // a genuine certificate, CN dev-001 != device_id
        {"dev-forged", pki("devices/dev-forged.crt")},        // a CA that copies Sub-CA A's name and key id
        {"foreign-dev", pki("devices/foreign-dev.crt")},      // an unrelated Root
        {"dev-expired", pki("devices/dev-expired.crt")},      // Sub-CA A, but expired
    };
    std::vector<std::string> payloads;
    for (const auto& [id, file] : forged) payloads.push_back(job_for(file, id));
    auto good = make_jobs("trusted-", 1);
    payloads.push_back(good[0].payload);  // after them: the worker went through the forged ones
    inject(redis, payloads);

    REQUIRE(eventually([&] { return fakes.thingsboard_state().at("devices").get<long long>() >= 1; }, 10s));
    REQUIRE(eventually([&] { return redis.integer({"XLEN", "devicegate:jobs:dead"}) == 6; }, 10s));
    auto dead = dead_letters(redis);
    for (const auto& [id, file] : forged) {
        INFO(id);
        CHECK(dead[id] == "untrusted");
        CHECK(redis.integer({"EXISTS", "devicegate:device:" + id}) == 0);  // not even the state hash
    }
    CHECK(redis.integer({"EXISTS", "devicegate:device:dev-001"}) == 0);
    CHECK(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"untrusted\"}") == 6; }));  // counted after the dead letter is written
    std::this_thread::sleep_for(300ms);
    auto tb = fakes.thingsboard_state();
    CHECK(tb.at("devices").get<long long>() == 1);  // only trusted-0
    CHECK(tb.at("creates").get<long long>() == 1);
    CHECK(fakes.hawkbit_state().at("creates").get<long long>() == 1);
    CHECK(fakes.thingsboard_device("trusted-0").is_object());
    const std::string log = worker.log();
    CHECK(log.find("reason=untrusted") != std::string::npos);
    CHECK(log.find("(self_signed)") != std::string::npos);
    CHECK(log.find("(wrong_issuer)") != std::string::npos);
    CHECK(log.find("(client_id_mismatch)") != std::string::npos);
    CHECK(log.find("(expired)") != std::string::npos);
}

TEST_CASE("the worker refuses to start without a valid tenant chain", "[integration][worker][integrity]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    SECTION("a Sub-CA that the ICA did not issue") {
        worker_process worker(redis, fakes, {.extra = {{"tenant_ca_file", pki("other-subca.crt")}}});
        CHECK_FALSE(worker.start());
        CHECK(worker.wait_exit(5s) == 1);
        CHECK(worker.log().find("tenant_ca_file, ica_file, root_ca_file: ") != std::string::npos);
        CHECK(worker.log().find("was not issued by the ICA") != std::string::npos);
    }
    SECTION("a missing file") {
        worker_process worker(redis, fakes, {.extra = {{"root_ca_file", pki("no-such-root.crt")}}});
        CHECK_FALSE(worker.start());
        CHECK(worker.wait_exit(5s) == 1);
        CHECK(worker.log().find("no-such-root.crt") != std::string::npos);
    }
}
