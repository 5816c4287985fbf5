// Decommission end to end: real mosquitto with the plugin, real redis-server, the
// devicegate-worker process, devicegate-ctl and the fake ThingsBoard / hawkBit.
#include "harness.hpp"

#include "devicegate/http.hpp"
#include "devicegate/job.hpp"
#include "devicegate/pki.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;
using nlohmann::json;

namespace {

long long count(const json& state, const char* name) { return state.at(name).get<long long>(); }

bool status_says(const redis_server& redis, const std::string& id, const std::string& text) {
    return eventually([&] { return ctl({"status", id}, redis.url()).out.find(text) != std::string::npos; }, 10s);
}

/// Redis, the fakes, a worker and a broker, with `id` connected and registered in both fakes.
struct registered_device {
    redis_server redis;
    fake_backends fakes;
    std::unique_ptr<worker_process> worker;  // after the servers: its configuration names their ports
    std::unique_ptr<broker> b;
    std::unique_ptr<client> c;

    explicit registered_device(const std::string& id, worker_options options = {}) {
        REQUIRE(redis.start());
        REQUIRE(fakes.start());
        worker = std::make_unique<worker_process>(redis, fakes, std::move(options));
        REQUIRE(worker->start());
        b = std::make_unique<broker>(broker_options{.redis = &redis});
        REQUIRE(b->start());
        c = device(id);
        REQUIRE(c->connect(b->port()) == 0);
        REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") == 1 && count(fakes.hawkbit_state(), "targets") == 1; }, 10s));
    }
};

/// A pending action on the hawkBit target (as a rollout would leave one); its id.
std::string add_pending_action(const fake_backends& fakes, const std::string& id) {
    devicegate::http_client http;
    auto r = http.post(fakes.hawkbit_url() + "/_fake/targets/" + id + "/actions", R"({"status":"pending"})", "application/json", {});
    REQUIRE(r);
    REQUIRE(r.status == 200);
    return std::to_string(json::parse(r.body)["id"].get<long long>());
}

json hawkbit_target(const fake_backends& fakes, const std::string& id) {
    devicegate::http_client http;
    auto r = http.get(fakes.hawkbit_url() + "/_fake/targets/" + id, {});
    REQUIRE(r);
    return r.status == 200 ? json::parse(r.body) : json();
}

}  // namespace

TEST_CASE("revoke --decommission kicks the device and removes it from both targets; only reregister brings it back",
          "[integration][worker][decommission]") {
    registered_device s("dev-001");
    auto& [redis, fakes, worker_ptr, broker_ptr, c] = s;
    worker_process& worker = *worker_ptr;
    broker& b = *broker_ptr;
    REQUIRE(status_says(redis, "dev-001", "hawkbit:      registered"));

    auto revoked = ctl({"revoke", "dev-001", "--decommission", "--reason", "stolen"}, redis.url());
    REQUIRE(revoked.exit_code == 0);
    CHECK(revoked.out.find("decommission of dev-001 enqueued") != std::string::npos);
    CHECK(c->wait_disconnected(5000ms));
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") == 0 && count(fakes.hawkbit_state(), "targets") == 0; }, 10s));
    CHECK(fakes.thingsboard_device("dev-001").is_null());
    REQUIRE(status_says(redis, "dev-001", "decommissioned: "));
    CHECK(ctl({"status", "dev-001"}, redis.url()).out.find("hawkbit:      decommissioned") != std::string::npos);
    CHECK(worker.metric("devicegate_worker_jobs_decommissioned_total") == 1);

    // Unrevoked and connecting again (a new broker: it plans a job again): not resurrected.
    REQUIRE(ctl({"unrevoke", "dev-001"}, redis.url()).exit_code == 0);
    b.stop();
    broker b2({.redis = &redis});
    REQUIRE(b2.start());
    auto again = device("dev-001");
    REQUIRE(again->connect(b2.port()) == 0);
    REQUIRE(eventually([&] { return b2.log().find("allow client=dev-001") != std::string::npos; }));
    // The broker enqueues nothing for a certificate the hash already holds; a job that does
    // come (here: hand-made, as a renewal or a replay would bring one) is skipped by the worker.
    const std::string pem = redis.command({"HGET", "devicegate:device:dev-001", "certificate"});
    auto certs = devicegate::parse_certificates(pem, "stored");
    REQUIRE(certs.size() == 1);
    devicegate::device_certificate cert{"dev-001", devicegate::serial_hex(X509_get0_serialNumber(certs[0].get())),
                                        devicegate::fingerprint_hex(devicegate::certificate_sha256(certs[0].get())),
                                        pem, 1795000000, "test"};
    redis.command({"XADD", "devicegate:jobs", "*", "type", "first_connect", "job",
                   devicegate::encode_job(cert, devicegate::job_type::first_connect)});
    REQUIRE(worker.wait_for_log("skipped job=", 10000ms));
    CHECK(worker.log().find("the device was decommissioned; devicegate-ctl reregister dev-001") != std::string::npos);
    CHECK(count(fakes.thingsboard_state(), "devices") == 0);
    CHECK(count(fakes.hawkbit_state(), "targets") == 0);

    // The documented way back.
    auto rereg = ctl({"reregister", "dev-001"}, redis.url());
    REQUIRE(rereg.exit_code == 0);
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") == 1 && count(fakes.hawkbit_state(), "targets") == 1; }, 10s));
    REQUIRE(status_says(redis, "dev-001", "hawkbit:      registered"));
    CHECK(ctl({"status", "dev-001"}, redis.url()).out.find("decommissioned:") == std::string::npos);
}

TEST_CASE("A decommission job for a device that is not revoked is dead-lettered as not_revoked",
          "[integration][worker][decommission]") {
    registered_device s("dev-002");
    auto& [redis, fakes, worker_ptr, broker_ptr, c] = s;
    worker_process& worker = *worker_ptr;

    // Whoever can write the stream can claim anything: without a revocation nothing is deleted.
    redis.command({"XADD", "devicegate:jobs", "*", "type", "decommission", "job",
                  R"({"schema":1,"type":"decommission","device_id":"dev-002","serial":"","fingerprint_sha256":"","reason":"x","requested_at":1})"});
    REQUIRE(eventually([&] { return redis.integer({"XLEN", "devicegate:jobs:dead"}) == 1; }, 10s));
    // The worker counts a dead letter after writing it: a scrape in between still reads 0.
    CHECK(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"not_revoked\"}") == 1; }));
    CHECK(count(fakes.thingsboard_state(), "devices") == 1);
    CHECK(count(fakes.hawkbit_state(), "targets") == 1);
}

TEST_CASE("decommission_mode keep: the ThingsBoard device stays without its certificate and revoked=true; the hawkBit "
          "target's actions are canceled and it is tagged; reregister brings the certificate back",
          "[integration][worker][decommission]") {
    worker_options keep;
    keep.extra = {{"decommission_mode", "keep"}};
    registered_device s("dev-001", keep);
    auto& [redis, fakes, worker_ptr, broker_ptr, c] = s;
    worker_process& worker = *worker_ptr;
    REQUIRE(status_says(redis, "dev-001", "hawkbit:      registered"));
    const std::string action = add_pending_action(fakes, "dev-001");
    const std::string certificate = fakes.thingsboard_device("dev-001")["credentials"]["credentialsValue"];

    auto revoked = ctl({"revoke", "dev-001", "--decommission", "--reason", "stolen"}, redis.url());
    REQUIRE(revoked.exit_code == 0);
    CHECK(c->wait_disconnected(5000ms));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_decommissioned_total") == 1; }, 10s));
    CHECK(worker.log().find("mode=keep thingsboard=revoked hawkbit=revoked") != std::string::npos);
    json d = fakes.thingsboard_device("dev-001");
    REQUIRE_FALSE(d.is_null());  // kept
    CHECK(d["credentials"]["credentialsType"] == "ACCESS_TOKEN");
    CHECK(d["server_attributes"]["revoked"]["value"] == true);
    CHECK(d["server_attributes"]["revokedReason"]["value"] == "stolen");
    CHECK(d["server_attributes"]["revokedTime"]["value"].get<long long>() > 0);
    // The replacement token is a secret nobody needs: never in the log.
    CHECK(worker.log().find(d["credentials"]["credentialsId"].get<std::string>()) == std::string::npos);
    json t = hawkbit_target(fakes, "dev-001");
    REQUIRE_FALSE(t.is_null());
    CHECK(t["tags"] == json::array({"devicegate-revoked"}));
    CHECK(t["actions"][action] == "canceled");
    CHECK(count(fakes.thingsboard_state(), "devices") == 1);
    CHECK(count(fakes.hawkbit_state(), "targets") == 1);
    REQUIRE(status_says(redis, "dev-001", "decommissioned: "));

    // The documented way back: unrevoke, then reregister; the stored certificate returns.
    REQUIRE(ctl({"unrevoke", "dev-001"}, redis.url()).exit_code == 0);
    REQUIRE(ctl({"reregister", "dev-001"}, redis.url()).exit_code == 0);
    // The worker restores the credentials, then writes revoked=false (a later call): wait for both.
    REQUIRE(eventually([&] {
        json back = fakes.thingsboard_device("dev-001");
        return back["credentials"]["credentialsType"] == "X509_CERTIFICATE" &&
               back["server_attributes"]["revoked"]["value"] == false;
    }, 10s));
    json back = fakes.thingsboard_device("dev-001");
    CHECK(back["credentials"]["credentialsValue"] == certificate);
    CHECK(back["server_attributes"]["revoked"]["value"] == false);
    CHECK(count(fakes.thingsboard_state(), "creates") == 1);  // the same device, never deleted
    REQUIRE(status_says(redis, "dev-001", "hawkbit:      registered"));
    CHECK(hawkbit_target(fakes, "dev-001")["tags"].empty());  // eligible for rollouts again
    CHECK(count(fakes.hawkbit_state(), "creates") == 1);
}
