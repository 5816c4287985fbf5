// The registration path end to end: real mosquitto with the plugin, real redis-server, the
// devicegate-worker process and the fake ThingsBoard / hawkBit (devicegate-fakes).
#include "harness.hpp"

#include "devicegate/pki.hpp"
#include "devicegate/redis.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <iostream>
#include <signal.h>
#include <sstream>

using namespace devicegate::itest;
using nlohmann::json;

namespace {

long long xlen(const redis_server& redis, const std::string& key) { return redis.integer({"XLEN", key}); }
long long dead(const redis_server& redis) { return xlen(redis, "devicegate:jobs:dead"); }

/// Pending (delivered, unacknowledged) jobs of the workers' group.
long long pending(const redis_server& redis) {
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    auto r = c.command({"XPENDING", "devicegate:jobs", "devicegate-workers"});
    return r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0]->integer : -1;
}

long long count(const json& state, const char* name) { return state.at(name).get<long long>(); }

std::string bare_base64(const std::string& pem) {
    std::string out;
    std::istringstream in(pem);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("-----", 0) != 0) out += line;
    }
    return out;
}

std::string first_pem(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    std::string text = s.str();
    const std::string end = "-----END CERTIFICATE-----";
    return text.substr(0, text.find(end) + end.size()) + "\n";
}

std::vector<std::string> payloads(const std::vector<injected_job>& jobs) {
    std::vector<std::string> out;
    for (const auto& j : jobs) out.push_back(j.payload);
    return out;
}

bool registered(const fake_backends& fakes, long long n, std::chrono::milliseconds timeout) {
    return eventually([&] { return count(fakes.thingsboard_state(), "devices") >= n && count(fakes.hawkbit_state(), "targets") >= n; },
                      timeout);
}

}  // namespace

TEST_CASE("A device's first connect registers it in ThingsBoard (with its certificate) and hawkBit",
          "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());
    broker b({.redis = &redis});
    REQUIRE(b.start());

    auto c = device("dev-001");
    REQUIRE(c->connect(b.port()) == 0);
    REQUIRE(registered(fakes, 1, 10s));

    // The notification is the server-scope attributes; no Rule Engine call (the fake's stock
    // root chain would hold it for the whole timeout).
    REQUIRE(eventually([&] { return fakes.thingsboard_device("dev-001")["server_attributes"].contains("firstConnectTime"); }, 10s));
    json tb = fakes.thingsboard_device("dev-001");
    REQUIRE(tb.is_object());
    CHECK(tb["credentials"]["credentialsType"] == "X509_CERTIFICATE");
    CHECK(tb["credentials"]["credentialsValue"] == bare_base64(first_pem(pki("devices/dev-001.crt"))));
    CHECK(tb["messages"].empty());
    CHECK(tb["server_attributes"]["devicegateEvent"]["value"] == "firstConnect");
    CHECK(tb["server_attributes"]["certificateFingerprintSha256"]["value"].get<std::string>().size() >= 64);
    CHECK(tb["server_attributes"]["certificateNotAfter"]["value"].get<std::int64_t>() > 0);
    CHECK(count(fakes.hawkbit_state(), "creates") == 1);

    REQUIRE(eventually([&] { return ctl({"status", "dev-001"}, redis.url()).out.find("hawkbit:      registered") != std::string::npos; }));
    auto status = ctl({"status", "dev-001"}, redis.url());
    CHECK(status.exit_code == 0);
    CHECK(status.out.find("thingsboard:  registered (device " + tb["id"]["id"].get<std::string>() + ")") != std::string::npos);
    CHECK(status.out.find("last error:   -") != std::string::npos);
    CHECK(worker.metric("devicegate_worker_jobs_done_total") == 1);

    // A reconnect is not a first connect: nothing new anywhere.
    c.reset();
    auto again = device("dev-001");
    REQUIRE(again->connect(b.port()) == 0);
    // Proving that the reconnect enqueues nothing needs a bounded wait once the broker has
    // decided it (a job goes from admission to the stream in milliseconds; 300 ms is ample).
    REQUIRE(eventually([&] {
        const std::string log = b.log();
        const auto first = log.find("allow client=dev-001");
        return first != std::string::npos && log.find("allow client=dev-001", first + 1) != std::string::npos;
    }));
    std::this_thread::sleep_for(300ms);
    CHECK(count(fakes.thingsboard_state(), "creates") == 1);
    CHECK(count(fakes.thingsboard_state(), "attribute_writes") == 1);
    CHECK(count(fakes.thingsboard_state(), "rule_engine_messages") == 0);
    CHECK(xlen(redis, "devicegate:jobs") == 0);  // acknowledged jobs are deleted
}

TEST_CASE("5xx bursts, dropped connections and an expired token are survived", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());

    auto jobs = make_jobs("burst-", 35);
    inject(redis, {jobs[0].payload, jobs[1].payload});
    REQUIRE(registered(fakes, 2, 10s));  // logged in; the token is in use

    fakes.expire_tokens();
    fakes.thingsboard_faults({{"fail_next", 6}, {"status", 503}, {"drop_next", 2}});
    fakes.hawkbit_faults({{"fail_next", 4}, {"status", 502}});
    std::vector<std::string> rest;
    for (std::size_t i = 2; i < jobs.size(); ++i) rest.push_back(jobs[i].payload);
    inject(redis, rest);
    REQUIRE(registered(fakes, 35, 20s));

    auto tb = fakes.thingsboard_state();
    auto hb = fakes.hawkbit_state();
    CHECK(count(tb, "creates") == 35);
    CHECK(count(hb, "creates") == 35);
    CHECK(count(tb, "faults_injected") == 8);
    CHECK(count(hb, "faults_injected") == 4);
    CHECK(count(tb, "logins") == 1);
    CHECK(count(tb, "refreshes") == 1);
    CHECK(dead(redis) == 0);
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_jobs_done_total") == 35; }));
    CHECK(worker.metric("devicegate_worker_jobs_retried_total") >= 1);
    CHECK(worker.metric("devicegate_worker_target_errors_total{target=\"thingsboard\",kind=\"http_5xx\"}") >= 1);
    CHECK(worker.metric("devicegate_worker_target_errors_total{target=\"thingsboard\",kind=\"transport\"}") >= 1);
    CHECK(worker.metric("devicegate_worker_target_errors_total{target=\"hawkbit\",kind=\"http_5xx\"}") >= 1);
    CHECK(worker.metric("devicegate_worker_thingsboard_token_refreshes_total") == 1);
    CHECK(worker.metric("devicegate_worker_registration_seconds_count") == 35);
    CHECK(worker.log().find("tenant@thingsboard.org") != std::string::npos);  // the user, for the operator
    CHECK(worker.log().find("password tenant") == std::string::npos);
}

TEST_CASE("kill -9 of a worker mid-job loses nothing and registers nothing twice", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    fakes.thingsboard_faults({{"latency_ms", 100}});
    inject(redis, payloads(make_jobs("crash-", 60)));

    worker_process a(redis, fakes, {.consumer_name = "worker-a", .concurrency = 8, .claim_idle = "1s"});
    REQUIRE(a.start());
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") >= 10; }, 20s));
    a.signal(SIGKILL);
    REQUIRE(a.wait_exit(5s));
    const long long before = count(fakes.thingsboard_state(), "devices");
    CHECK(before < 60);
    CHECK(pending(redis) > 0);  // jobs the dead worker held

    worker_process b(redis, fakes, {.consumer_name = "worker-b", .concurrency = 8, .claim_idle = "1s"});
    REQUIRE(b.start());
    REQUIRE(registered(fakes, 60, 30s));
    REQUIRE(eventually([&] { return pending(redis) == 0 && xlen(redis, "devicegate:jobs") == 0; }, 10s));
    auto tb = fakes.thingsboard_state();
    CHECK(count(tb, "devices") == 60);
    CHECK(count(tb, "creates") == 60);
    CHECK(count(fakes.hawkbit_state(), "targets") == 60);
    CHECK(count(fakes.hawkbit_state(), "creates") == 60);
    CHECK(dead(redis) == 0);
    CHECK(b.metric("devicegate_worker_jobs_reclaimed_total") >= 1);
    CHECK(b.log().find("claimed job=") != std::string::npos);
}

TEST_CASE("10,000 first-connect jobs yield exactly 10,000 devices and 10,000 targets", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    auto jobs = make_jobs("fleet-", 10000);
    inject(redis, payloads(jobs));
    REQUIRE(xlen(redis, "devicegate:jobs") == 10000);

    // Two workers side by side, as in production.
    worker_options quiet{.consumer_name = "worker-a", .concurrency = 16};
    quiet.extra = {{"log_level", "notice"}};
    worker_process a(redis, fakes, quiet);
    quiet.consumer_name = "worker-b";
    worker_process b(redis, fakes, quiet);
    const auto started = clock::now();
    REQUIRE(a.start());
    REQUIRE(b.start());
    REQUIRE(registered(fakes, 10000, 180s));
    const double seconds = std::chrono::duration<double>(clock::now() - started).count();
    std::cout << "10,000 registrations by 2 workers x 16: " << seconds << " s (" << 10000 / seconds << "/s)\n";

    REQUIRE(eventually([&] { return xlen(redis, "devicegate:jobs") == 0 && pending(redis) == 0; }, 10s));
    auto tb = fakes.thingsboard_state();
    auto hb = fakes.hawkbit_state();
    CHECK(count(tb, "devices") == 10000);
    CHECK(count(tb, "creates") == 10000);
    CHECK(count(tb, "name_conflicts") == 0);
    CHECK(count(tb, "attribute_writes") == 10000);
    CHECK(count(hb, "targets") == 10000);
    CHECK(count(hb, "creates") == 10000);
    CHECK(count(hb, "conflicts") == 0);
    CHECK(dead(redis) == 0);
    CHECK(a.metric("devicegate_worker_jobs_done_total") + b.metric("devicegate_worker_jobs_done_total") == 10000);
    // Spot checks: each device holds its own certificate.
    for (int i : {0, 4321, 9999}) {
        json d = fakes.thingsboard_device(jobs[static_cast<std::size_t>(i)].device_id);
        REQUIRE(d.is_object());
        CHECK(d["credentials"]["credentialsValue"] == bare_base64(jobs[static_cast<std::size_t>(i)].certificate_pem));
    }
}

TEST_CASE("A permanent 4xx is dead-lettered, listed, and succeeds on replay once fixed", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    fakes.hawkbit_faults({{"fail_always", 400}, {"path", "/rest/v1/targets"}});
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());
    auto jobs = make_jobs("refused-", 2);
    inject(redis, payloads(jobs));

    REQUIRE(eventually([&] { return dead(redis) == 2; }, 10s));
    CHECK(count(fakes.hawkbit_state(), "faults_injected") == 2);  // not retried
    CHECK(count(fakes.thingsboard_state(), "devices") == 2);       // ThingsBoard part done
    auto status = ctl({"status", "refused-0"}, redis.url());
    CHECK(status.out.find("hawkbit:      failed") != std::string::npos);
    CHECK(status.out.find("HTTP 400") != std::string::npos);
    auto list = ctl({"dlq", "list"}, redis.url());
    CHECK(list.exit_code == 0);
    CHECK(list.out.find("device=refused-0") != std::string::npos);
    CHECK(list.out.find("reason=permanent") != std::string::npos);
    CHECK(list.out.find("hawkbit: POST /rest/v1/targets: HTTP 400") != std::string::npos);
    CHECK(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"permanent\"}") == 2; }));  // counted after the dead letter is written

    fakes.hawkbit_faults(json::object());
    // Replay one by the id the worker's log line names, then the rest.
    const std::string log = worker.log();
    const auto line = log.rfind('\n', log.find("device=refused-0 reason=permanent")) + 1;
    const auto hint = log.find("(devicegate-ctl dlq replay ", line) + std::string("(devicegate-ctl dlq replay ").size();
    const std::string first_id = log.substr(hint, log.find(')', hint) - hint);
    CHECK(list.out.find(first_id + " ") != std::string::npos);
    CHECK(log.find(" as " + first_id + " device=refused-0") != std::string::npos);
    auto one = ctl({"dlq", "replay", first_id}, redis.url());
    CHECK(one.exit_code == 0);
    CHECK(one.out.find("replayed 1 job") != std::string::npos);
    REQUIRE(eventually([&] { return count(fakes.hawkbit_state(), "targets") == 1; }, 10s));
    CHECK(ctl({"dlq", "replay", first_id}, redis.url()).exit_code == 3);  // gone
    auto all = ctl({"dlq", "replay", "--all"}, redis.url());
    CHECK(all.out.find("replayed 1 job") != std::string::npos);
    REQUIRE(registered(fakes, 2, 10s));
    REQUIRE(eventually([&] { return ctl({"status", "refused-1"}, redis.url()).out.find("hawkbit:      registered") != std::string::npos; }));
    CHECK(dead(redis) == 0);
    CHECK(count(fakes.thingsboard_state(), "creates") == 2);
    CHECK(count(fakes.thingsboard_state(), "attribute_writes") == 2);  // ThingsBoard was not redone
    CHECK(ctl({"dlq", "list"}, redis.url()).out.find("empty") != std::string::npos);
}

TEST_CASE("Malformed jobs are dead-lettered at once and the worker keeps serving", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());

    auto jobs = make_jobs("good-", 2);
    json wrong_fingerprint = json::parse(jobs[1].payload);
    wrong_fingerprint["fingerprint_sha256"] = std::string(64, 'A');
    json bad_id = json::parse(jobs[1].payload);
    bad_id["device_id"] = "a/b#";
    inject(redis, {"not json", R"({"schema":2,"type":"first_connect"})", bad_id.dump(), wrong_fingerprint.dump(),
                   R"({"schema":1,"type":"first_connect","device_id":"x","serial":"01","fingerprint_sha256":"00","certificate_pem":"garbage","first_seen":1,"broker_id":"b"})"});
    redis.command({"XADD", "devicegate:jobs", "*", "type", "first_connect"});  // no job field
    inject(redis, {jobs[0].payload});

    REQUIRE(eventually([&] { return dead(redis) == 6; }, 10s));
    REQUIRE(registered(fakes, 1, 10s));
    // A device key of the wrong type (written by something else): dead-lettered at once with
    // Redis's cause, not retried until it counts as poison.
    auto wrong_type = make_jobs("wrongtype-", 1);
    redis.command({"SET", "devicegate:device:wrongtype-0", "not a hash"});
    inject(redis, {wrong_type[0].payload});
    REQUIRE(eventually([&] { return dead(redis) == 7; }, 10s));
    CHECK(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"permanent\"}") == 1; }));
    CHECK(worker.log().find("reason=permanent attempts=0: unexpected data in Redis") != std::string::npos);
    CHECK(worker.log().find("WRONGTYPE") != std::string::npos);
    CHECK(worker.log().find("reason=poison") == std::string::npos);
    CHECK(eventually([&] { return worker.metric("devicegate_worker_jobs_dead_total{reason=\"malformed\"}") == 6; }));  // counted after the dead letter is written
    const std::string log = worker.log();
    CHECK(log.find("malformed job: not JSON") != std::string::npos);
    CHECK(log.find("malformed job: unsupported schema") != std::string::npos);
    CHECK(log.find("malformed job: device_id is not a safe device id") != std::string::npos);
    CHECK(log.find("malformed job: fingerprint_sha256 does not match certificate_pem") != std::string::npos);
    CHECK(log.find("malformed job: certificate_pem is not a PEM certificate") != std::string::npos);
    CHECK(log.find("malformed job: no \"job\" field") != std::string::npos);
    CHECK(count(fakes.thingsboard_state(), "faults_injected") == 0);
    CHECK(count(fakes.thingsboard_state(), "devices") == 1);  // nothing of the malformed ones reached ThingsBoard
}

TEST_CASE("SIGTERM hands back a job that waits for a retry, and another worker finishes it", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    fakes.thingsboard_faults({{"fail_always", 503}});
    worker_process a(redis, fakes, {.retry_initial = "20s", .retry_max = "30s"});
    REQUIRE(a.start());
    inject(redis, payloads(make_jobs("patient-", 1)));
    REQUIRE(a.wait_for_log("retry device=patient-0"));
    a.signal(SIGTERM);
    REQUIRE(a.wait_exit(5s) == std::optional<int>(0));
    CHECK(a.log().find("handed back to the stream after 1 attempt") != std::string::npos);
    CHECK(xlen(redis, "devicegate:jobs") == 1);
    CHECK(pending(redis) == 0);

    fakes.thingsboard_faults(json::object());
    worker_process b(redis, fakes, {.consumer_name = "worker-b"});
    REQUIRE(b.start());
    REQUIRE(registered(fakes, 1, 10s));
    REQUIRE(b.wait_for_log("attempts=2"));  // the attempt count travelled with the job
}

TEST_CASE("A bad worker configuration stops it with the setting named and no secret printed", "[integration][worker]") {
    redis_server redis;
    fake_backends fakes;
    worker_process w(redis, fakes, {.extra = {{"concurrency", "lots"}, {"thingsboard_password", "s3cret-Value"}}});
    CHECK_FALSE(w.start());
    CHECK(w.wait_exit(5s) == std::optional<int>(1));
    CHECK(w.log().find("concurrency: bad value; expected a number of concurrent jobs") != std::string::npos);
    CHECK(w.log().find("s3cret") == std::string::npos);
}

TEST_CASE("A job whose workers keep dying is dead-lettered as poison, not retried forever", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    fakes.thingsboard_faults({{"latency_ms", 3000}});  // the job is still in flight when its worker dies
    inject(redis, payloads(make_jobs("poison-", 1)));
    worker_options o{.claim_idle = "500ms"};
    o.extra = {{"max_deliveries", "1"}};
    worker_process a(redis, fakes, o);
    REQUIRE(a.start());
    REQUIRE(eventually([&] { return pending(redis) == 1; }));
    a.signal(SIGKILL);
    REQUIRE(a.wait_exit(5s));

    o.consumer_name = "worker-b";
    worker_process b(redis, fakes, o);
    REQUIRE(b.start());
    REQUIRE(eventually([&] { return dead(redis) == 1; }, 10s));
    CHECK(pending(redis) == 0);
    auto list = ctl({"dlq", "list"}, redis.url());
    CHECK(list.out.find("reason=poison") != std::string::npos);
    CHECK(list.out.find("delivered 2 times without finishing") != std::string::npos);
    CHECK(b.metric("devicegate_worker_jobs_dead_total{reason=\"poison\"}") == 1);
}

TEST_CASE("A renewed certificate replaces the device's ThingsBoard credentials, once", "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());
    broker b({.redis = &redis});
    REQUIRE(b.start());

    REQUIRE(device("dev-001")->connect(b.port()) == 0);
    REQUIRE(registered(fakes, 1, 10s));
    client renewed("dev-001", pki("devices/dev-001-renewed.crt"), pki("devices/dev-001-renewed.key"));
    REQUIRE(renewed.connect(b.port()) == 0);
    const std::string expected = bare_base64(first_pem(pki("devices/dev-001-renewed.crt")));
    REQUIRE(eventually([&] {
        json d = fakes.thingsboard_device("dev-001");
        return d["credentials"]["credentialsValue"] == expected &&
               d["server_attributes"]["devicegateEvent"]["value"] == "certificateChanged";
    }, 10s));
    json tb = fakes.thingsboard_device("dev-001");
    CHECK(tb["server_attributes"]["certificateSerial"]["value"] != "");
    CHECK(count(fakes.thingsboard_state(), "attribute_writes") == 2);
    auto state = fakes.thingsboard_state();
    CHECK(count(state, "devices") == 1);
    CHECK(count(state, "creates") == 1);
    CHECK(count(state, "credential_updates") == 1);
    CHECK(count(fakes.hawkbit_state(), "creates") == 1);  // the target was already there
    REQUIRE(worker.wait_for_log("type=certificate_changed thingsboard=credentials_updated"));
}

TEST_CASE("Redis killed and restarted under a working worker: every job is still registered once",
          "[integration][worker]") {
    redis_server redis(true);  // append-only with fsync: the stream and the group survive SIGKILL
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    fakes.thingsboard_faults({{"latency_ms", 50}});
    inject(redis, payloads(make_jobs("outage-", 40)));
    worker_process worker(redis, fakes, {.concurrency = 4});
    REQUIRE(worker.start());
    REQUIRE(eventually([&] { return count(fakes.thingsboard_state(), "devices") >= 5; }, 10s));
    redis.kill();
    REQUIRE(worker.wait_for_log("unreachable"));
    REQUIRE(eventually([&] { return worker.metric("devicegate_worker_redis_up") == 0; }));
    REQUIRE(redis.start());
    auto reconnected = [&] {
        const std::string log = worker.log();
        const auto first = log.find("0 connected");
        return first != std::string::npos && log.find("0 connected", first + 1) != std::string::npos;
    };
    REQUIRE(eventually(reconnected, 10s));
    REQUIRE(registered(fakes, 40, 30s));
    REQUIRE(eventually([&] { return xlen(redis, "devicegate:jobs") == 0 && pending(redis) == 0; }, 10s));
    CHECK(count(fakes.thingsboard_state(), "creates") == 40);
    CHECK(count(fakes.hawkbit_state(), "creates") == 40);
    CHECK(dead(redis) == 0);
    CHECK(worker.metric("devicegate_worker_redis_up") == 1);
}

TEST_CASE("harness: fakes on ports they pick, and a worker whose metrics port was taken starts on a new one",
          "[integration][worker][harness]") {
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    CHECK(fakes.thingsboard_url() != fakes.hawkbit_url());
    CHECK(count(fakes.thingsboard_state(), "devices") == 0);
    worker_process worker(redis, fakes);
    const int taken = worker.metrics_port();
    {
        port_holder holder(taken);
        REQUIRE(worker.start());
    }
    CHECK(worker.metrics_port() != taken);
    CHECK(worker.metric("devicegate_worker_redis_up") == 1);
    CHECK(worker.log().find("cannot listen on metrics_listen") == std::string::npos);  // set aside
}

TEST_CASE("a second worker on the metrics port of a running one refuses to start", "[integration][worker]") {
    // cpp-httplib's default SO_REUSEPORT let the second bind succeed: two workers answered
    // scrapes of one port in turn.
    redis_server redis;
    REQUIRE(redis.start());
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process first(redis, fakes);
    REQUIRE(first.start());
    const auto log = first.config_file().parent_path() / "second-worker.log";
    process second({DEVICEGATE_WORKER_PATH, "-c", first.config_file().string()}, log);  // the same metrics_listen
    const auto status = second.wait_exit(5000ms);
    REQUIRE(status.has_value());
    CHECK(*status != 0);
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find("cannot listen on metrics_listen 127.0.0.1:" + std::to_string(first.metrics_port())) !=
          std::string::npos);
    CHECK(first.metric("devicegate_worker_redis_up") == 1);
}

TEST_CASE("devicegate-ctl workers lists the workers by their heartbeats, and says when none beats",
          "[integration][worker]") {
    redis_server redis;
    REQUIRE(redis.start());
    auto none = ctl({"workers"}, redis.url());  // no worker ever started
    CHECK(none.exit_code == 3);
    CHECK_THAT(none.out, Catch::Contains("is devicegate-worker running?"));

    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);  // consumer_name worker-a
    REQUIRE(worker.start());
    REQUIRE(eventually([&] { return ctl({"workers"}, redis.url()).exit_code == 0; }));
    auto live = ctl({"workers"}, redis.url());
    CHECK_THAT(live.out, Catch::Contains("job stream devicegate:jobs: 0 job(s)"));
    CHECK_THAT(live.out, Catch::Contains("worker-a") && Catch::Contains("live  last heartbeat"));
    CHECK_THAT(live.out, !Catch::Contains("warning"));
    // Idle for longer than a heartbeat: still live (it beats every 5 s, jobs or not).
    std::this_thread::sleep_for(6s);
    CHECK(ctl({"workers", "--max-idle", "6s"}, redis.url()).exit_code == 0);

    worker.signal(SIGKILL);  // dies: its last heartbeat stays, ageing
    REQUIRE(worker.wait_exit(5s).has_value());
    inject(redis, payloads(make_jobs("waiting-", 2)));
    std::this_thread::sleep_for(2500ms);
    auto dead = ctl({"workers", "--max-idle", "2s"}, redis.url());
    CHECK(dead.exit_code == 3);
    CHECK_THAT(dead.out, Catch::Contains("job stream devicegate:jobs: 2 job(s)"));
    CHECK_THAT(dead.out, Catch::Contains("worker-a") && Catch::Contains("silent"));
    CHECK_THAT(dead.out, Catch::Contains("no worker wrote a heartbeat in the last 2s"));
    CHECK(ctl({"workers", "--max-idle", "soon"}, redis.url()).exit_code == 1);

    // A clean stop removes it from the list.
    worker_process again(redis, fakes, {.consumer_name = "worker-b"});
    REQUIRE(again.start());
    REQUIRE(eventually([&] { return redis.command({"HEXISTS", "devicegate:workers", "worker-b"}) == "1"; }));
    again.signal(SIGTERM);
    REQUIRE(again.wait_exit(10s).has_value());
    CHECK(redis.command({"HEXISTS", "devicegate:workers", "worker-b"}) == "0");
}
