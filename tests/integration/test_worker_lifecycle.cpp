// Issue 14 through the real processes: redis-server, devicegate-worker and devicegate-fakes in
// their stock mode (ThingsBoard's root rule chain without a reply node). Jobs are injected into
// the stream as the plugin writes them.
#include "devicegate/http.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

using namespace devicegate::itest;
using nlohmann::json;

namespace {

long long dead(const redis_server& redis) { return redis.integer({"XLEN", "devicegate:jobs:dead"}); }
long long count(const json& state, const char* name) { return state.at(name).get<long long>(); }

std::vector<std::string> payloads(const std::vector<injected_job>& jobs) {
    std::vector<std::string> out;
    for (const auto& j : jobs) out.push_back(j.payload);
    return out;
}

std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

/// devicegate-worker -c FILE --check: its exit code and output (stdout and stderr).
ctl_result check_worker(const std::filesystem::path& config) {
    const auto log = config.parent_path() / (config.stem().string() + "-check.log");
    process p({DEVICEGATE_WORKER_PATH, "-c", config.string(), "--check"}, log);
    ctl_result r;
    r.exit_code = p.wait_exit(20s).value_or(-1);
    r.out = log_since(log, 0);
    return r;
}

void delete_in_thingsboard(const fake_backends& fakes, const std::string& name) {
    devicegate::http_client http;
    auto r = http.post(fakes.thingsboard_url() + "/_fake/devices/" + name + "/delete", "", "application/json", {});
    REQUIRE(r);
    REQUIRE(r.status == 200);
}

/// redis-server, the fakes (stock mode unless `fake_args` say otherwise) and one worker, started.
struct stack {
    redis_server redis;
    fake_backends fakes;
    std::unique_ptr<worker_process> worker;
    explicit stack(const worker_options& o = {}, std::vector<std::string> fake_args = {}) : fakes(std::move(fake_args)) {
        REQUIRE(redis.start());
        REQUIRE(fakes.start());
        worker = std::make_unique<worker_process>(redis, fakes, o);
        REQUIRE(worker->start());
    }
};

}  // namespace

TEST_CASE("A refused ThingsBoard login pauses consumption: one login per interval, nothing dead-lettered",
          "[integration][worker][auth]") {
    worker_options wrong;
    wrong.extra = {{"auth_retry_initial", "400ms"}, {"auth_retry_max", "400ms"}};
    stack s(wrong, {"--tb-password", "the-right-one"});  // the worker logs in as tenant/tenant: refused
    auto& redis = s.redis;
    auto& fakes = s.fakes;
    auto& worker = *s.worker;
    inject(redis, payloads(make_jobs("paused-", 5)));

    REQUIRE(worker.wait_for_log("thingsboard refused the login"));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_auth_paused{target=\"thingsboard\"}") == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // ~4 intervals
    const double refusals = worker.metric("devicegate_worker_login_refusals_total");
    CHECK(refusals >= 2);
    CHECK(refusals <= 6);  // one per 400 ms interval, not one per job or per thread
    CHECK(count(fakes.thingsboard_state(), "auth_failures") == static_cast<long long>(refusals));
    CHECK(dead(redis) == 0);
    CHECK(worker.metric("devicegate_worker_jobs_done_total") == 0);
    CHECK(occurrences(worker.log(), "refused the login") == 1);  // one line per transition
    CHECK(worker.log().find("the-right-one") == std::string::npos);

    // Stopped while paused: its jobs go back to the stream; a worker with the right password
    // registers every one of them.
    worker.signal(SIGTERM);
    REQUIRE(worker.wait_exit(std::chrono::seconds(10)).has_value());
    worker_options right;
    right.consumer_name = "worker-b";
    right.extra = {{"thingsboard_password", "the-right-one"}};
    worker_process fixed(redis, fakes, right);
    REQUIRE(fixed.start());
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") == 5 &&
                                    count(fakes.hawkbit_state(), "targets") == 5; }, 10s));
    CHECK(dead(redis) == 0);
    CHECK(fixed.metric("devicegate_worker_auth_paused{target=\"thingsboard\"}") == 0);
}

TEST_CASE("Deleted devices are created again and a credentials version conflict is retried, not dead-lettered",
          "[integration][worker]") {
    stack s;
    auto& redis = s.redis;
    auto& fakes = s.fakes;
    auto& worker = *s.worker;

    inject(redis, payloads(make_jobs("life-", 1)));
    REQUIRE(worker.wait_for_log("registered device=life-0"));
    delete_in_thingsboard(fakes, "life-0");

    // The next certificate of the device (a new job with a new fingerprint): created again.
    inject(redis, payloads(make_jobs("life-", 1)));
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "creates") == 2; }, 10s));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 2; }, 10s));
    json d = fakes.thingsboard_device("life-0");
    CHECK(d["server_attributes"].contains("certificateSerial"));

    // 409 errorCode 35 (stale credentials version) on the next renewal: read again, retried.
    fakes.thingsboard_faults({{"path", "/api/device/credentials"}, {"fail_next", 1}, {"status", 409}});
    const auto third = make_jobs("life-", 1);
    inject(redis, payloads(third));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 3; }, 10s));
    CHECK(worker.metric("devicegate_worker_thingsboard_credentials_conflicts_total") == 1);
    CHECK(worker.log().find("thingsboard=credentials_updated") != std::string::npos);
    CHECK(dead(redis) == 0);
    CHECK(count(fakes.thingsboard_state(), "version_conflicts") == 0);  // the injected 409 is the fault's
}

TEST_CASE("The optional Rule Engine message against the stock root chain: 408 is 'queued', warned once",
          "[integration][worker]") {
    worker_options o;
    o.extra = {{"thingsboard_rule_engine", "on"}, {"thingsboard_rule_engine_timeout", "200ms"}};
    stack s(o);  // the fakes' stock rule chain: 408 after the request's timeout
    auto& redis = s.redis;
    auto& fakes = s.fakes;
    auto& worker = *s.worker;
    inject(redis, payloads(make_jobs("re-", 3)));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 3; }, 10s));
    CHECK(worker.metric("devicegate_worker_rule_engine_unanswered_total") == 3);
    CHECK(count(fakes.thingsboard_state(), "rule_engine_timeouts") == 3);
    CHECK(occurrences(worker.log(), "answered 408") == 1);
    CHECK(occurrences(worker.log(), "notified=queued") == 3);
    CHECK(count(fakes.thingsboard_state(), "attribute_writes") == 3);  // the notification did not depend on it
}

TEST_CASE("devicegate-ctl reregister: a device deleted in ThingsBoard is registered again",
          "[integration][worker][ctl]") {
    stack s;
    auto& redis = s.redis;
    auto& fakes = s.fakes;
    auto& worker = *s.worker;
    broker b({.redis = &redis});
    REQUIRE(b.start());

    REQUIRE(device("dev-001")->connect(b.port()) == 0);
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 1; }, 10s));
    delete_in_thingsboard(fakes, "dev-001");
    // A reconnect enqueues nothing: Redis records the registration, the broker planned its job.
    REQUIRE(device("dev-001")->connect(b.port()) == 0);
    auto r = ctl({"reregister", "dev-001"}, redis.url());
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("registration job enqueued") != std::string::npos);
    CHECK(ctl({"reregister", "dev-never"}, redis.url()).exit_code == 3);

    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 2; }, 10s));
    CHECK(count(fakes.thingsboard_state(), "creates") == 2);
    CHECK(fakes.thingsboard_device("dev-001")["server_attributes"]["devicegateEvent"]["value"] == "firstConnect");
    CHECK(count(fakes.hawkbit_state(), "creates") == 1);  // the target was still there: 409 = exists
    REQUIRE(eventually([&] { return ctl({"status", "dev-001"}, redis.url()).out.find("hawkbit:      registered") != std::string::npos; }));
}

TEST_CASE("The dead-letter stream is bounded (dead_letter_max, MAXLEN ~) and can be trimmed by hand",
          "[integration][worker][ctl]") {
    worker_options o;
    o.extra = {{"dead_letter_max", "10"}};
    stack s(o);
    auto& redis = s.redis;
    auto& worker = *s.worker;
    inject(redis, std::vector<std::string>(400, "not json"));  // dead-lettered at once (malformed)
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"malformed\"}") == 400; }, 20s));
    // Redis trims whole stream nodes (stream-node-max-entries 100): at most 10 + one node's worth.
    const long long kept = dead(redis);
    CHECK(kept >= 10);
    CHECK(kept <= 110);
    auto trimmed = ctl({"dlq", "trim", "--max", "3"}, redis.url());
    CHECK(trimmed.exit_code == 0);
    CHECK(dead(redis) == 3);
}

TEST_CASE("A configured device profile that does not exist pauses registrations until it is created; never created "
          "by the worker",
          "[integration][worker][setup]") {
    worker_options o;
    o.extra = {{"thingsboard_device_profile", "sensor"}, {"auth_retry_initial", "300ms"}, {"auth_retry_max", "300ms"}};
    stack s(o);
    auto& redis = s.redis;
    auto& fakes = s.fakes;
    auto& worker = *s.worker;
    inject(redis, payloads(make_jobs("prof-", 4)));

    REQUIRE(worker.wait_for_log("device profile 'sensor' not found in ThingsBoard: registrations paused; create it or "
                                "fix thingsboard_device_profile"));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_setup_paused{target=\"thingsboard\"}") == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // ~3 probe intervals
    CHECK(count(fakes.thingsboard_state(), "devices") == 0);
    CHECK(count(fakes.thingsboard_state(), "profiles_created") == 0);
    const double probes = worker.metric("devicegate_worker_setup_missing_total");
    CHECK(probes >= 2);
    CHECK(probes <= 6);  // one lookup per interval, not one per job or thread
    CHECK(dead(redis) == 0);
    CHECK(occurrences(worker.log(), "not found in ThingsBoard") == 1);  // one line per transition

    devicegate::http_client http;
    auto created = http.post(fakes.thingsboard_url() + "/_fake/device_profiles", R"({"name":"sensor"})", "application/json", {});
    REQUIRE(created);
    REQUIRE(created.status == 200);
    const std::string profile_id = json::parse(created.body)["id"];
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") == 4 && count(fakes.hawkbit_state(), "targets") == 4; }, 10s));
    CHECK(fakes.thingsboard_device("prof-0")["deviceProfileId"]["id"] == profile_id);
    CHECK(fakes.thingsboard_device("prof-0")["type"] == "sensor");
    REQUIRE(worker.wait_for_log("registrations resumed"));
    CHECK(worker.metric("devicegate_worker_setup_paused{target=\"thingsboard\"}") == 0);
    CHECK(dead(redis) == 0);
}

TEST_CASE("devicegate-worker --check names a missing device profile when ThingsBoard answers; only notes an "
          "unreachable one",
          "[integration][worker][setup]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes({"--tb-device-profile", "sensor", "--tb-customer", "ACME"});
    REQUIRE(fakes.start());
    worker_options o;
    o.extra = {{"thingsboard_device_profile", "sensr"}, {"thingsboard_customer", "ACME"}};
    worker_process worker(redis, fakes, o);
    auto missing = check_worker(worker.config_file());
    CHECK(missing.exit_code == 1);
    CHECK(missing.out.find("check failed: device profile 'sensr' not found in ThingsBoard (thingsboard_device_profile)") != std::string::npos);
    CHECK(missing.out.find("customer 'ACME' not found") == std::string::npos);  // ACME exists

    worker_options good;
    good.extra = {{"thingsboard_device_profile", "sensor"}, {"thingsboard_customer", "ACME"}};
    worker_process fine(redis, fakes, good);
    auto ok = check_worker(fine.config_file());
    CHECK(ok.exit_code == 0);
    CHECK(ok.out.find("thingsboard: login and configured names ok") != std::string::npos);
    CHECK(count(fakes.thingsboard_state(), "profiles_created") == 0);

    worker_options wrong;
    wrong.extra = {{"thingsboard_password", "Wr0ng-pass"}};
    worker_process refused(redis, fakes, wrong);
    auto login = check_worker(refused.config_file());
    CHECK(login.exit_code == 1);
    CHECK(login.out.find("check failed: thingsboard: login refused (POST /api/auth/login: HTTP 401") != std::string::npos);
    CHECK(login.out.find("Wr0ng-pass") == std::string::npos);

    // Nothing answers: the names are not checked, and that is no failure (CI checks the example).
    std::ifstream in(worker.config_file());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const std::string& url : {fakes.thingsboard_url(), fakes.hawkbit_url()}) {
        text.replace(text.find(url), url.size(), "http://127.0.0.1:1");  // nothing listens on port 1
    }
    const auto offline = worker.config_file().parent_path() / "offline.conf";
    std::ofstream(offline) << text;
    auto unreachable = check_worker(offline);
    CHECK(unreachable.exit_code == 0);
    CHECK(unreachable.out.find("thingsboard not checked") != std::string::npos);
}

TEST_CASE("hawkBit's DosFilter 429 is retried with backoff; a quota 403 is dead-lettered as quota",
          "[integration][worker][hawkbit]") {
    SECTION("429") {
        worker_options o;
        o.max_attempts = "30";
        stack s(o, {"--hb-dos-filter", "1,1000"});  // two writes per second for every client IP
        auto& redis = s.redis;
        auto& fakes = s.fakes;
        auto& worker = *s.worker;
        inject(redis, payloads(make_jobs("dos-", 3)));
        REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 3; }, 20s));
        CHECK(count(fakes.hawkbit_state(), "dos_refusals") >= 1);
        CHECK(worker.metric("devicegate_worker_target_errors_total{target=\"hawkbit\",kind=\"http_429\"}") >= 1);
        CHECK(dead(redis) == 0);
    }
    SECTION("a Retry-After (as a proxy in front may send) sets the wait, capped by retry_max") {
        worker_options o;
        o.retry_max = "5s";
        stack s(o);
        auto& worker = *s.worker;
        s.fakes.hawkbit_faults({{"path", "/rest/v1/targets"}, {"fail_next", 1}, {"status", 429}, {"retry_after", "1"}});
        inject(s.redis, payloads(make_jobs("later-", 1)));
        REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 1; }, 10s));
        CHECK(worker.log().find("attempt 2/8 in 1000 ms: hawkbit: POST /rest/v1/targets: HTTP 429") != std::string::npos);
    }
    SECTION("403 quota") {
        stack s({}, {"--hb-max-metadata", "2"});  // the worker writes three entries per target
        auto& redis = s.redis;
        auto& worker = *s.worker;
        inject(redis, payloads(make_jobs("quota-", 1)));
        REQUIRE(eventually([&] { return dead(redis) == 1; }, 10s));
        CHECK(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"quota\"}") == 1; }));  // counted after the dead letter is written
        CHECK(worker.log().find("reason=quota") != std::string::npos);
        CHECK(worker.log().find("hawkBit quota exceeded (hawkbit.server.error.quota.tooManyEntries)") != std::string::npos);
        CHECK(worker.metric("devicegate_worker_jobs_retried_total") == 0);  // permanent: not retried
    }
}
