// devicegate-ctl reconcile end to end: redis-server, the devicegate-worker process, the
// devicegate-fakes process and the devicegate-ctl process reading the worker's configuration.
#include "harness.hpp"

#include "devicegate/http.hpp"
#include "devicegate/pki.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;
using nlohmann::json;

namespace {

long long count(const json& state, const char* name) { return state.at(name).get<long long>(); }

/// POST with an optional Basic login; the status (0 on a transport error).
long post(const std::string& url, const std::string& body, const std::string& basic = "") {
    devicegate::http_client http;
    devicegate::http_get_options o;
    if (!basic.empty()) o.headers = {"Authorization: Basic " + devicegate::base64_encode(basic)};
    return http.post(url, body, "application/json", o).status;
}

bool registered(const redis_server& redis, const std::string& id) {
    return redis.command({"HGET", "devicegate:device:" + id, "thingsboard"}) == "registered" &&
           redis.command({"HGET", "devicegate:device:" + id, "hawkbit"}) == "registered";
}

}  // namespace

TEST_CASE("reconcile: a device deleted in ThingsBoard is reported; --fix re-enqueues it and the worker creates it again",
          "[integration][worker][reconcile]") {
    redis_server redis;
    fake_backends fakes;
    REQUIRE(redis.start());
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());
    std::vector<std::string> payloads;
    for (const auto& j : make_jobs("rec-", 5)) payloads.push_back(j.payload);
    inject(redis, payloads);
    REQUIRE(eventually([&] {
        for (int i = 0; i < 5; ++i) {
            if (!registered(redis, "rec-" + std::to_string(i))) return false;
        }
        return true;
    }, 15s));
    const std::string conf = worker.config_file().string();

    auto in_step = ctl({"reconcile", "--worker-config", conf, "--page-size", "2"}, redis.url());
    INFO(in_step.out);
    CHECK(in_step.exit_code == 0);
    CHECK(in_step.out.find("result: in step") != std::string::npos);

    REQUIRE(post(fakes.thingsboard_url() + "/_fake/devices/rec-2/delete", "{}") == 200);
    REQUIRE(post(fakes.hawkbit_url() + "/rest/v1/targets", R"([{"controllerId":"stray-1"}])", "admin:admin") == 201);
    auto report = ctl({"reconcile", "--worker-config", conf}, redis.url());
    INFO(report.out);
    CHECK(report.exit_code == 1);
    CHECK(report.out.find("missing thingsboard rec-2: registered in Redis, absent in ThingsBoard\n") != std::string::npos);
    CHECK(report.out.find("orphan hawkbit stray-1: in hawkBit, unknown to Redis") != std::string::npos);
    CHECK(report.out.find("result: 2 differences\n") != std::string::npos);
    CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == 0);  // report mode enqueues nothing
    CHECK(fakes.thingsboard_device("rec-2").is_null());

    auto fixed = ctl({"reconcile", "--worker-config", conf, "--fix"}, redis.url());
    INFO(fixed.out);
    CHECK(fixed.exit_code == 1);  // the orphan is left: never deleted
    CHECK(fixed.out.find("missing thingsboard rec-2: registered in Redis, absent in ThingsBoard; re-enqueued\n") !=
          std::string::npos);
    CHECK(fixed.out.find("1 devices re-enqueued, 1 left") != std::string::npos);
    REQUIRE(worker.wait_for_log("registered device=rec-2", 15000ms));
    REQUIRE(eventually([&] { return registered(redis, "rec-2"); }, 10s));
    CHECK_FALSE(fakes.thingsboard_device("rec-2").is_null());
    CHECK(count(fakes.thingsboard_state(), "devices") == 5);
    CHECK(count(fakes.hawkbit_state(), "targets") == 6);  // stray-1 is still there
    CHECK(count(fakes.hawkbit_state(), "deletes") == 0);

    auto after = ctl({"reconcile", "--worker-config", conf, "--backend", "thingsboard"}, redis.url());
    INFO(after.out);
    CHECK(after.exit_code == 0);
    CHECK(after.out.find("result: in step") != std::string::npos);
}

TEST_CASE("reconcile: a backend failure or an unusable configuration is exit 2, bad arguments exit 1",
          "[integration][reconcile]") {
    redis_server redis;
    fake_backends fakes;
    REQUIRE(redis.start());
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);  // not started: only its configuration file is used
    const std::string conf = worker.config_file().string();

    fakes.thingsboard_faults({{"path", "/api/tenant/devices"}, {"fail_always", 503}});
    auto failed = ctl({"reconcile", "--worker-config", conf, "--fix"}, redis.url());
    INFO(failed.out);
    CHECK(failed.exit_code == 2);
    CHECK(failed.out.find("devicegate-ctl: reconcile: thingsboard: GET /api/tenant/devices (page 0): HTTP 503") !=
          std::string::npos);
    CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == 0);
    fakes.thingsboard_faults(json::object());

    fakes.hawkbit_faults({{"path", "/rest/v1/targets"}, {"fail_always", 502}});
    auto refused = ctl({"reconcile", "--worker-config", conf}, redis.url());
    INFO(refused.out);
    CHECK(refused.exit_code == 2);
    CHECK(refused.out.find("devicegate-ctl: reconcile: hawkbit: GET /rest/v1/targets (offset 0): HTTP 502") !=
          std::string::npos);

    auto missing = ctl({"reconcile", "--worker-config", "/nonexistent/worker.conf"}, redis.url());
    CHECK(missing.exit_code == 2);
    CHECK(missing.out.find("cannot read the worker configuration /nonexistent/worker.conf") != std::string::npos);

    auto bad = ctl({"reconcile", "--worker-config", conf, "--backend", "mqtt"}, redis.url());
    CHECK(bad.exit_code == 1);
    CHECK(bad.out.find("--backend needs thingsboard, hawkbit or all") != std::string::npos);
}
