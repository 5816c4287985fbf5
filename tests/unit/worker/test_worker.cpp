// The worker's pieces without Redis: configuration, job parsing, and the ThingsBoard and
// hawkBit clients against the in-process fakes (tests/fakes).
#include "cert_factory.hpp"
#include "devicegate/duration.hpp"
#include "devicegate/job.hpp"
#include "fake_backends.hpp"
#include "hawkbit_client.hpp"
#include "issued_job.hpp"
#include "test_pki.hpp"
#include "thingsboard_client.hpp"
#include "worker.hpp"
#include "worker_config.hpp"

#include <catch2/catch.hpp>

#include <future>

using namespace devicegate;
using namespace devicegate::worker;
using nlohmann::json;

namespace {

const std::string minimal = std::string(R"(# comment
thingsboard_url http://tb:8080/
thingsboard_username tenant@thingsboard.org
thingsboard_password tb-Secret-1
hawkbit_url http://hawkbit:8080
hawkbit_username admin
hawkbit_password hb-Secret-2
)") + "tenant_ca_file " + test::pki("subca-a.crt") + "\nica_file " + test::pki("ica.crt") +
                            "\nroot_ca_file " + test::pki("root.crt") + "\n";

job make_job(const std::string& id, job_type type = job_type::first_connect) { return test::issued_job(id, type); }

struct backends {
    fakes::fake_thingsboard tb;
    fakes::fake_hawkbit hb;
    worker_config config;
    worker_metrics metrics;
    login_gate tb_gate{target::thingsboard, std::chrono::milliseconds(200), std::chrono::milliseconds(800), metrics};
    login_gate hb_gate{target::hawkbit, std::chrono::milliseconds(200), std::chrono::milliseconds(800), metrics};
    setup_lookup tb_setup{target::thingsboard, std::chrono::milliseconds(200), std::chrono::milliseconds(800), metrics};
    setup_lookup hb_setup{target::hawkbit, std::chrono::milliseconds(200), std::chrono::milliseconds(800), metrics};
    std::unique_ptr<thingsboard_session> session;

    explicit backends(fakes::thingsboard_options tbo = {}, fakes::hawkbit_options hbo = {}) : tb(tbo), hb(hbo) {
        tb.start("127.0.0.1", 0);
        hb.start("127.0.0.1", 0);
        config = parse_worker_config(minimal, {});
        config.thingsboard.url = tb.url();
        config.thingsboard.username = tbo.username;
        config.thingsboard.password = tbo.password;
        config.thingsboard.rule_engine_timeout = std::chrono::milliseconds(100);
        config.hawkbit.url = hb.url();
        config.hawkbit.username = hbo.username;
        config.hawkbit.password = hbo.password;
        config.http_timeout = std::chrono::seconds(5);
        session = std::make_unique<thingsboard_session>(config.thingsboard, config.http_timeout, metrics, tb_gate);
    }
    thingsboard_client thingsboard() { return {config.thingsboard, config.http_timeout, *session, metrics, tb_setup}; }
    hawkbit_client hawkbit() { return {config.hawkbit, config.http_timeout, metrics, hb_gate, hb_setup}; }
};

/// A device registered in both fakes by register_job, with the state it recorded.
struct registered_device {
    backends b;
    thingsboard_client tb = b.thingsboard();
    hawkbit_client hb = b.hawkbit();
    job j;
    std::map<std::string, std::string> state;
    explicit registered_device(const std::string& id) : j(make_job(id)), state{{"fingerprint", j.cert.fingerprint_sha256}} {
        register_job(j, state, tb, hb);
    }
};

target_failure failure_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const target_failure& e) {
        return e;
    }
    FAIL("no target_failure");
    throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("Worker configuration: file, environment, validation, no secrets in messages", "[worker][config]") {
    SECTION("a minimal file, defaults filled in") {
        auto c = parse_worker_config(minimal, {});
        CHECK(c.thingsboard.url == "http://tb:8080");  // trailing slash dropped
        CHECK(c.concurrency == 16);
        CHECK(c.consumer_group == "devicegate-workers");
        CHECK_FALSE(c.consumer_name.empty());
        CHECK(c.redis.port == 6379);
    }
    SECTION("environment variables win over the file") {
        auto c = parse_worker_config(minimal, {{"DEVICEGATE_CONCURRENCY", "3"},
                                               {"DEVICEGATE_REDIS_URL", "redis://:pw@redis:6380/2"},
                                               {"DEVICEGATE_THINGSBOARD_PASSWORD", "from-env"},
                                               {"UNRELATED", "x"}});
        CHECK(c.concurrency == 3);
        CHECK(c.redis.host == "redis");
        CHECK(c.redis.port == 6380);
        CHECK(c.thingsboard.password == "from-env");
        const std::string d = c.describe();
        CHECK(d.find("from-env") == std::string::npos);
        CHECK(d.find("pw") == std::string::npos);
        CHECK(d.find("hb-Secret-2") == std::string::npos);
    }
    SECTION("errors name the setting and the expected form, never the value") {
        auto error_of = [](const std::string& text, const std::map<std::string, std::string>& env = {}) {
            try {
                parse_worker_config(text, env);
            } catch (const worker_config_error& e) {
                return std::string(e.what());
            }
            return std::string("no error");
        };
        CHECK(error_of(minimal + "concurency 4\n") == "line 11: concurency: unknown setting");
        CHECK(error_of(minimal + "concurrency 0\n").find("concurrency: bad value; expected a number") != std::string::npos);
        CHECK(error_of(minimal + "claim_idle soon\n").find("claim_idle: bad value; expected a duration") != std::string::npos);
        CHECK(error_of(minimal + "thingsboard_url ftp://x\n").find("thingsboard_url: bad value") != std::string::npos);
        CHECK(error_of(minimal + "metrics_listen 9464\n").find("metrics_listen: bad value; expected host:port, or off") != std::string::npos);
        const std::string redis = error_of(minimal, {{"DEVICEGATE_REDIS_URL", "http://:hunter2@x"}});
        CHECK(redis.find("DEVICEGATE_REDIS_URL: bad value") != std::string::npos);
        CHECK(redis.find("hunter2") == std::string::npos);
        CHECK(error_of("thingsboard_url http://tb\n") == "thingsboard_username: required (or DEVICEGATE_THINGSBOARD_USERNAME)");
        CHECK(error_of(minimal + "retry_initial 10s\nretry_max 1s\n") == "retry_max: must not be shorter than retry_initial");
        CHECK(error_of(minimal + "thingsboard_rule_engine yes\n") == "line 11: thingsboard_rule_engine: bad value; expected on or off");
        CHECK(error_of(minimal + "http_timeout 0s\n").find("http_timeout: bad value") != std::string::npos);
        CHECK(error_of(minimal + "concurrency +4\n").find("concurrency: bad value") != std::string::npos);
    }
    SECTION("on/off as the plugin options spell it (duration.hpp's parse_on_off)") {
        for (const auto& [spelling, value] : std::vector<std::pair<std::string, bool>>{
                 {"on", true}, {"true", true}, {"1", true}, {"off", false}, {"false", false}, {"0", false}}) {
            INFO(spelling);
            CHECK(parse_worker_config(minimal + "thingsboard_rule_engine " + spelling + "\n", {}).thingsboard.rule_engine == value);
            CHECK(parse_on_off(spelling) == value);
        }
    }
}

TEST_CASE("Jobs from the stream are checked before anything is registered", "[worker][job]") {
    const job good = make_job("dev-7");
    const std::string payload = encode_job(good.cert, job_type::certificate_changed);
    CHECK(parse_job(payload).type == job_type::certificate_changed);
    auto with = [&](const char* field, json value) {
        json j = json::parse(payload);
        j[field] = std::move(value);
        return j.dump();
    };
    auto lowercase = good.cert.fingerprint_sha256;
    std::transform(lowercase.begin(), lowercase.end(), lowercase.begin(), [](unsigned char c) { return std::tolower(c); });
    CHECK_NOTHROW(parse_job(with("fingerprint_sha256", lowercase)));
    // Upper case is accepted too; the job carries fingerprint_hex's spelling onwards.
    auto uppercase = lowercase;
    std::transform(uppercase.begin(), uppercase.end(), uppercase.begin(), [](unsigned char c) { return std::toupper(c); });
    CHECK(uppercase != lowercase);
    CHECK(parse_job(with("fingerprint_sha256", uppercase)).cert.fingerprint_sha256 == lowercase);
    CHECK(same_fingerprint(uppercase, lowercase));
    CHECK_FALSE(same_fingerprint(lowercase, lowercase.substr(1)));
    CHECK_THROWS_WITH(parse_job("{"), "not JSON");
    CHECK_THROWS_WITH(parse_job("[1]"), "not a JSON object");
    CHECK_THROWS_WITH(parse_job(with("schema", 2)), "unsupported schema (expected 1)");
    CHECK_THROWS_WITH(parse_job(with("schema", "1")), "unsupported schema (expected 1)");
    CHECK_THROWS_WITH(parse_job(with("type", "reboot")), "unknown job type");
    CHECK_THROWS_WITH(parse_job(with("device_id", "a/b")), "device_id is not a safe device id");
    CHECK_THROWS_WITH(parse_job(with("first_seen", "yesterday")), "missing integer field first_seen");
    CHECK_THROWS_WITH(parse_job(with("certificate_pem", "garbage")), "certificate_pem is not a PEM certificate");
    CHECK_THROWS_WITH(parse_job(with("certificate_pem", good.cert.certificate_pem + good.cert.certificate_pem)),
                      "certificate_pem holds 2 certificates, expected 1");
    CHECK_THROWS_WITH(parse_job(with("fingerprint_sha256", std::string(64, '0'))),
                      "fingerprint_sha256 does not match certificate_pem");
}

TEST_CASE("ThingsBoard client: idempotent device with X.509 credentials and server-scope attributes",
          "[worker][thingsboard]") {
    backends b;  // the fake's stock rule chain: a Rule Engine call would wait for its timeout
    auto tb = b.thingsboard();
    const job j = make_job("dev-1");

    auto first = tb.register_device(j);
    CHECK(first.action == "created");
    CHECK(first.notified == "off");  // the Rule Engine message is off by default
    json d = b.tb.device("dev-1");
    CHECK(d["id"]["id"] == first.device_uuid);
    CHECK(d["credentials"]["credentialsValue"] == thingsboard_certificate_value(j.cert.certificate_pem));
    CHECK(d["messages"].empty());
    CHECK(b.tb.state()["rule_engine_messages"] == 0);
    const json& a = d["server_attributes"];
    auto leaf = parse_certificates(j.cert.certificate_pem, "test");
    CHECK(a["firstConnectTime"]["value"] == 1795000000000LL);
    CHECK(a["certificateFirstSeen"]["value"] == 1795000000000LL);
    CHECK(a["certificateSerial"]["value"] == j.cert.serial_hex);
    CHECK(a["certificateFingerprintSha256"]["value"] == j.cert.fingerprint_sha256);
    CHECK(a["certificateNotAfter"]["value"] ==
          static_cast<std::int64_t>(to_time_t(X509_get0_notAfter(leaf.at(0).get()))) * 1000);
    CHECK(a["certificateIssuer"]["value"].get<std::string>().find("CN") != std::string::npos);
    CHECK(a["devicegateBrokerId"]["value"] == "b1");
    CHECK(a["devicegateEvent"]["value"] == "firstConnect");
    CHECK(b.metrics.attribute_writes == 1);

    SECTION("running the same job again creates nothing") {
        auto again = tb.register_device(j);
        CHECK(again.action == "unchanged");
        CHECK(again.device_uuid == first.device_uuid);
        CHECK(b.tb.state()["creates"] == 1);
        CHECK(b.tb.state()["credential_updates"] == 0);
        CHECK(b.tb.state()["logins"] == 1);
    }
    SECTION("a renewed certificate replaces the credentials") {
        job renewed = make_job("dev-1", job_type::certificate_changed);
        auto r = tb.register_device(renewed);
        CHECK(r.action == "credentials_updated");
        CHECK(b.tb.device("dev-1")["credentials"]["credentialsValue"] ==
              thingsboard_certificate_value(renewed.cert.certificate_pem));
        const json a2 = b.tb.device("dev-1")["server_attributes"];
        CHECK(a2["devicegateEvent"]["value"] == "certificateChanged");
        CHECK(a2["certificateSerial"]["value"] == renewed.cert.serial_hex);
        CHECK(a2["certificateFingerprintSha256"]["value"] == renewed.cert.fingerprint_sha256);
        CHECK(a2["firstConnectTime"] == a["firstConnectTime"]);  // a renewal does not move the first connect
        CHECK(b.metrics.credentials_updated == 1);
        CHECK(b.metrics.attribute_writes == 2);
    }
    SECTION("an expired token is refreshed once, not re-logged in") {
        b.tb.expire_tokens();
        CHECK(tb.register_device(make_job("dev-2")).action == "created");
        CHECK(b.tb.state()["refreshes"] == 1);
        CHECK(b.tb.state()["logins"] == 1);
        CHECK(b.metrics.thingsboard_refreshes == 1);
    }
    SECTION("another device with the same certificate is refused permanently") {
        job clone = j;
        clone.cert.device_id = "dev-clone";
        auto f = failure_of([&] { tb.register_device(clone); });
        CHECK_FALSE(f.retryable);
        CHECK(f.status == 400);
        CHECK(std::string(f.what()).find("already assigned to another device") != std::string::npos);
    }
}

TEST_CASE("ThingsBoard client: two workers creating the same device at once", "[worker][thingsboard]") {
    backends b;
    b.tb.set_faults({.path = "/api/device-with-credentials", .latency_ms = 200});
    const job j = make_job("dev-race");
    auto run = [&] {
        auto tb = b.thingsboard();
        return tb.register_device(j);
    };
    auto one = std::async(std::launch::async, run);
    auto two = std::async(std::launch::async, run);
    auto r1 = one.get(), r2 = two.get();
    CHECK(r1.device_uuid == r2.device_uuid);
    CHECK(b.tb.state()["creates"] == 1);
    CHECK(b.tb.state()["name_conflicts"] == 1);
    CHECK((r1.action == "created") != (r2.action == "created"));
}

TEST_CASE("ThingsBoard client: failures are classified per the contract", "[worker][thingsboard]") {
    SECTION("5xx, 429 and dropped connections are retryable; other 4xx are not") {
        backends b;
        auto tb = b.thingsboard();
        b.tb.set_faults({.fail_next = 1, .fail_status = 503});
        auto f = failure_of([&] { tb.register_device(make_job("d1")); });
        CHECK(f.retryable);
        CHECK(f.status == 503);
        CHECK(std::string(f.what()).find("thingsboard: POST /api/auth/login: HTTP 503") == 0);
        b.tb.set_faults({.fail_next = 1, .fail_status = 429});
        CHECK(failure_of([&] { tb.register_device(make_job("d1")); }).retryable);
        b.tb.set_faults({.drop_next = 1});
        auto dropped = failure_of([&] { tb.register_device(make_job("d1")); });
        CHECK(dropped.retryable);
        CHECK(dropped.status == 0);
        CHECK(std::string(dropped.what()).find("transport error") != std::string::npos);
        b.tb.set_faults({.fail_next = 1, .fail_status = 400});
        CHECK_FALSE(failure_of([&] { tb.register_device(make_job("d1")); }).retryable);
        CHECK(b.metrics.target_errors[0][static_cast<int>(error_kind::http_5xx)] == 1);
        CHECK(b.metrics.target_errors[0][static_cast<int>(error_kind::transport)] == 1);
    }
    SECTION("a ThingsBoard without the Rule Engine API (older than 3.8): JSON 404") {
        backends b({.rule_engine = "absent"});
        b.config.thingsboard.rule_engine = true;
        auto tb = b.thingsboard();
        CHECK(tb.register_device(make_job("d1")).notified == "unsupported");
        CHECK(b.metrics.rule_engine_unsupported == 1);
        CHECK(b.tb.state()["creates"] == 1);
    }
    SECTION("the stock root chain answers 408 after the timeout: queued, not delivered") {
        backends b({.rule_engine = "stock"});
        b.config.thingsboard.rule_engine = true;
        auto tb = b.thingsboard();
        CHECK(tb.register_device(make_job("d1")).notified == "queued");
        CHECK(b.tb.state()["rule_engine_messages"] == 1);
        CHECK(b.metrics.rule_engine_unanswered == 1);
    }
    SECTION("a chain with a reply node answers 200: delivered, with the message") {
        backends b({.rule_engine = "reply"});
        b.config.thingsboard.rule_engine = true;
        auto tb = b.thingsboard();
        const job j = make_job("d1");
        CHECK(tb.register_device(j).notified == "delivered");
        CHECK(b.tb.device("d1")["messages"][0] ==
              json({{"event", "firstConnect"}, {"deviceId", "d1"}, {"serial", j.cert.serial_hex},
                    {"fingerprintSha256", j.cert.fingerprint_sha256}, {"firstSeen", 1795000000}, {"brokerId", "b1"}}));
    }
}

TEST_CASE("ThingsBoard client: statuses as ThingsBoard 3.9 means them", "[worker][thingsboard]") {
    SECTION("409 errorCode 35 on a credentials save: read again and retry") {
        backends b;
        auto tb = b.thingsboard();
        tb.register_device(make_job("d1"));
        b.tb.set_faults({.path = "/api/device/credentials", .fail_next = 1, .fail_status = 409});
        job renewed = make_job("d1", job_type::certificate_changed);
        CHECK(tb.register_device(renewed).action == "credentials_updated");
        CHECK(b.tb.device("d1")["credentials"]["credentialsValue"] ==
              thingsboard_certificate_value(renewed.cert.certificate_pem));
        CHECK(b.metrics.credentials_version_conflicts == 1);
    }
    SECTION("409/35 every time: retryable, not permanent") {
        backends b;
        auto tb = b.thingsboard();
        tb.register_device(make_job("d1"));
        b.tb.set_faults({.path = "/api/device/credentials", .fail_always = 409});
        auto f = failure_of([&] { tb.register_device(make_job("d1", job_type::certificate_changed)); });
        CHECK(f.retryable);
        CHECK(std::string(f.what()).find("version conflict") != std::string::npos);
        CHECK(b.metrics.credentials_version_conflicts == 3);
    }
    SECTION("a device deleted in ThingsBoard is created again") {
        backends b;
        auto tb = b.thingsboard();
        const auto before = tb.register_device(make_job("d1")).device_uuid;
        REQUIRE(b.tb.delete_device("d1"));
        auto again = tb.register_device(make_job("d1", job_type::certificate_changed));
        CHECK(again.action == "created");
        CHECK(again.device_uuid != before);
        CHECK(b.tb.device("d1")["server_attributes"].contains("certificateSerial"));
    }
    SECTION("deleted between the lookup and the attribute write: the plain-text 404 re-creates it") {
        backends b;
        auto tb = b.thingsboard();
        tb.register_device(make_job("d1"));
        b.tb.set_faults({.path = "/api/plugins/telemetry", .latency_ms = 300});
        auto pending = std::async(std::launch::async, [&] { return tb.register_device(make_job("d1", job_type::certificate_changed)); });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // inside the attribute write's latency
        REQUIRE(b.tb.delete_device("d1"));
        auto r = pending.get();
        CHECK(r.action == "created");
        CHECK(b.tb.state()["creates"] == 2);
        CHECK(b.tb.device("d1")["id"]["id"] == r.device_uuid);
        CHECK(b.tb.device("d1")["server_attributes"]["devicegateEvent"]["value"] == "certificateChanged");
    }
    SECTION("a deleted device's Rule Engine 404 (plain text) is not 'older than 3.8'") {
        backends b({.rule_engine = "reply"});
        b.config.thingsboard.rule_engine = true;
        auto tb = b.thingsboard();
        tb.register_device(make_job("d1"));
        b.tb.set_faults({.path = "/api/rule-engine", .latency_ms = 300});
        auto pending = std::async(std::launch::async, [&] { return tb.register_device(make_job("d1")); });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        REQUIRE(b.tb.delete_device("d1"));
        auto r = pending.get();
        CHECK(r.notified == "delivered");
        CHECK(r.action == "created");
        CHECK(b.metrics.rule_engine_unsupported == 0);
    }
}

TEST_CASE("A refused login pauses: one probe per interval, no job failure", "[worker][auth]") {
    SECTION("ThingsBoard: wrong password") {
        backends b({.password = "right"});
        b.config.thingsboard.password = "Wr0ng-pass";
        auto tb = b.thingsboard();
        auto f = failure_of([&] { tb.register_device(make_job("d1")); });
        CHECK(f.paused);
        CHECK(std::string(f.what()).find("tenant@thingsboard.org") != std::string::npos);
        CHECK(std::string(f.what()).find("Wr0ng-pass") == std::string::npos);
        CHECK(b.tb_gate.paused());
        CHECK(b.metrics.auth_paused[0] == 1);
        // Inside the interval: refused without a request.
        for (int i = 0; i < 5; ++i) CHECK(failure_of([&] { tb.register_device(make_job("d1")); }).paused);
        CHECK(b.tb.state()["auth_failures"] == 1);
        CHECK(b.metrics.login_refusals == 1);
        // After the interval one probe goes out; fixed password: resumed.
        b.config.thingsboard.password = "right";
        std::this_thread::sleep_for(b.tb_gate.remaining() + std::chrono::milliseconds(20));
        CHECK(tb.register_device(make_job("d1")).action == "created");
        CHECK_FALSE(b.tb_gate.paused());
        CHECK(b.metrics.auth_paused[0] == 0);
    }
    SECTION("ThingsBoard lockout: the account is never locked by the worker") {
        backends b({.password = "right", .max_failed_login_attempts = 3});
        b.config.thingsboard.password = "Wr0ng-pass";
        auto tb = b.thingsboard();
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(700);
        int probes = 0;
        while (std::chrono::steady_clock::now() < until) {
            CHECK(failure_of([&] { tb.register_device(make_job("d1")); }).paused);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        probes = static_cast<int>(b.metrics.login_refusals.load());
        CHECK(probes >= 2);   // 0 ms, 200 ms, then 400 ms later: 600 ms
        CHECK(probes <= 3);   // never one per job
        b.config.thingsboard.password = "right";
        std::this_thread::sleep_for(b.tb_gate.remaining() + std::chrono::milliseconds(20));
        CHECK(tb.register_device(make_job("d1")).action == "created");  // not locked
    }
    SECTION("hawkBit: refused credentials pause too, the password is not shown") {
        backends b({}, {.password = "right"});
        b.config.hawkbit.password = "Wr0ng-hb";
        auto hb = b.hawkbit();
        auto f = failure_of([&] { hb.ensure_target("d1"); });
        CHECK(f.paused);
        CHECK(std::string(f.what()).find("Wr0ng-hb") == std::string::npos);
        CHECK(std::string(f.what()).find("user admin") != std::string::npos);
        CHECK(failure_of([&] { hb.ensure_target("d1"); }).paused);
        CHECK(b.hb.state()["auth_failures"] == 1);
    }
}

TEST_CASE("hawkBit client: one target per device, 409 is success", "[worker][hawkbit]") {
    SECTION("created, then exists") {
        backends b;
        auto hb = b.hawkbit();
        CHECK(hb.ensure_target("dev-1") == "created");
        CHECK(hb.ensure_target("dev-1") == "exists");
        CHECK(b.hb.state()["targets"] == 1);
        CHECK(b.hb.state()["conflicts"] == 1);
    }
    SECTION("hawkBit <= 0.6 spells the conflict code differently: still success") {
        backends b({}, {.legacy_error_codes = true});
        auto hb = b.hawkbit();
        hb.ensure_target("dev-1");
        CHECK(hb.ensure_target("dev-1") == "exists");
    }
    SECTION("5xx is retryable") {
        backends b;
        b.hb.set_faults({.fail_next = 1, .fail_status = 500});
        auto hb = b.hawkbit();
        CHECK(failure_of([&] { hb.ensure_target("dev-1"); }).retryable);
        CHECK(hb.ensure_target("dev-1") == "created");
    }
}

TEST_CASE("register_job: skips what is done, yields to a newer certificate", "[worker]") {
    backends b;
    auto tb = b.thingsboard();
    auto hb = b.hawkbit();
    const job j = make_job("dev-9");
    SECTION("fresh device: both targets, state recorded") {
        std::map<std::string, std::string> state{{"fingerprint", j.cert.fingerprint_sha256}};
        auto r = register_job(j, state, tb, hb);
        CHECK(r.thingsboard == "created");
        CHECK(r.hawkbit == "created");
        CHECK(state["thingsboard"] == "registered");
        CHECK(state["hawkbit"] == "registered");
        auto again = register_job(j, state, tb, hb);
        CHECK(again.thingsboard == "already");
        CHECK(again.hawkbit == "already");
        CHECK(b.tb.state()["requests"] == 4);  // lookup, create, rule engine + login
    }
    SECTION("a job for an older certificate does nothing") {
        std::map<std::string, std::string> state{{"fingerprint", std::string(64, 'F')}};
        CHECK(register_job(j, state, tb, hb).superseded);
        CHECK(b.tb.state()["requests"] == 0);
        CHECK(b.hb.state()["requests"] == 0);
    }
}

TEST_CASE("Worker metrics in the Prometheus text format", "[worker][metrics]") {
    worker_metrics m;
    ++m.jobs_done;
    m.dead(dead_reason::malformed);
    m.error(target::hawkbit, error_kind::http_429);
    m.observe_registration(std::chrono::milliseconds(30));
    const std::string text = m.render();
    CHECK(text.find("# TYPE devicegate_worker_jobs_done_total counter\ndevicegate_worker_jobs_done_total 1\n") != std::string::npos);
    CHECK(text.find("devicegate_worker_jobs_dead_total{reason=\"malformed\"} 1\n") != std::string::npos);
    CHECK(text.find("devicegate_worker_target_errors_total{target=\"hawkbit\",kind=\"http_429\"} 1\n") != std::string::npos);
    CHECK(text.find("devicegate_worker_registration_seconds_bucket{le=\"0.025\"} 0\n") != std::string::npos);
    CHECK(text.find("devicegate_worker_registration_seconds_bucket{le=\"0.05\"} 1\n") != std::string::npos);
    CHECK(text.find("devicegate_worker_registration_seconds_bucket{le=\"+Inf\"} 1\n") != std::string::npos);
    CHECK(text.find("devicegate_worker_registration_seconds_count 1\n") != std::string::npos);
    m.setup_paused[1] = 1;
    m.dead(dead_reason::quota);
    const std::string more = m.render();
    CHECK(more.find("# TYPE devicegate_worker_setup_paused gauge\ndevicegate_worker_setup_paused{target=\"thingsboard\"} 0\n"
                    "devicegate_worker_setup_paused{target=\"hawkbit\"} 1\n") != std::string::npos);
    CHECK(more.find("devicegate_worker_auth_paused{target=\"hawkbit\"} 0\n") != std::string::npos);
    CHECK(more.find("devicegate_worker_jobs_dead_total{reason=\"quota\"} 1\n") != std::string::npos);
}

TEST_CASE("ThingsBoard client: the configured device profile is looked up by its exact name and used by id",
          "[worker][thingsboard]") {
    backends b({.device_profiles = {"sensor", "sensor v2"}});
    auto tb = b.thingsboard();
    const std::string id = tb.find_device_profile("sensor v2");
    CHECK_FALSE(id.empty());
    CHECK(tb.find_device_profile("sensor") != id);   // textSearch matches both: exact name wins
    CHECK(tb.find_device_profile("sensr").empty());  // a typo is not found (and not created)
    CHECK(tb.find_device_profile("Sensor").empty());
    b.config.thingsboard.device_profile = "sensor v2";
    tb.register_device(make_job("d1"));
    json d = b.tb.device("d1");
    CHECK(d["deviceProfileId"]["id"] == id);
    CHECK(d["type"] == "sensor v2");
    CHECK(b.tb.state()["profiles_created"] == 0);
}

TEST_CASE("Decommission jobs: parsed without a certificate, checked otherwise", "[worker][job][decommission]") {
    const std::string payload = encode_decommission_job("dev-7", "4F2A", std::string(64, 'a'), "stolen", 1795000100);
    const job j = parse_job(payload);
    CHECK(j.type == job_type::decommission);
    CHECK(j.cert.device_id == "dev-7");
    CHECK(j.cert.serial_hex == "4F2A");
    CHECK(j.cert.certificate_pem.empty());
    CHECK(j.reason == "stolen");
    CHECK(j.requested_at == 1795000100);
    CHECK(std::string(to_string(j.type)) == "decommission");
    auto with = [&](const char* field, json value) {
        json o = json::parse(payload);
        o[field] = std::move(value);
        return o.dump();
    };
    CHECK_THROWS_WITH(parse_job(with("device_id", "a/b")), "device_id is not a safe device id");
    CHECK_THROWS_WITH(parse_job(with("requested_at", "now")), "missing integer field requested_at");
    CHECK_THROWS_WITH(parse_job(with("reason", 3)), Catch::Contains("reason"));
    CHECK_THROWS_WITH(parse_job(with("schema", 2)), "unsupported schema (expected 1)");
}

TEST_CASE("decommission_job: deletes in both targets, idempotently", "[worker][decommission]") {
    registered_device fixture("dev-5");
    // References, not a structured binding: clang 14 cannot capture those in lambdas.
    auto& b = fixture.b;
    auto& tb = fixture.tb;
    auto& hb = fixture.hb;
    auto& reg = fixture.j;
    auto& state = fixture.state;
    REQUIRE_FALSE(b.tb.device("dev-5").is_null());
    REQUIRE(b.hb.state()["targets"] == 1);
    const job d = parse_job(encode_decommission_job("dev-5", reg.cert.serial_hex, reg.cert.fingerprint_sha256, "lost", 1));

    SECTION("delete mode: the device and the target are gone; state says so") {
        auto r = decommission_job(d, state, tb, hb);
        CHECK(r.thingsboard == "deleted");
        CHECK(r.hawkbit == "deleted");
        CHECK(b.tb.device("dev-5").is_null());
        CHECK(b.hb.state()["targets"] == 0);
        CHECK(state["thingsboard"] == "decommissioned");
        CHECK(state["hawkbit"] == "decommissioned");
        CHECK(state["thingsboard_id"].empty());
        SECTION("a second run with the recorded state makes no request") {
            const auto tb_requests = b.tb.state()["requests"].get<int>();
            const auto hb_requests = b.hb.state()["requests"].get<int>();
            auto again = decommission_job(d, state, tb, hb);
            CHECK(again.thingsboard == "already");
            CHECK(again.hawkbit == "already");
            CHECK(b.tb.state()["requests"] == tb_requests);
            CHECK(b.hb.state()["requests"] == hb_requests);
        }
        SECTION("a run without the state (replayed job): 404 = already gone = success") {
            std::map<std::string, std::string> fresh;
            auto again = decommission_job(d, fresh, tb, hb);
            CHECK(again.thingsboard == "absent");
            CHECK(again.hawkbit == "absent");
        }
    }
    SECTION("a 5xx is retryable and a retry finishes what is left") {
        b.hb.set_faults({.fail_next = 1, .fail_status = 503});
        auto f = failure_of([&] { decommission_job(d, state, tb, hb); });
        CHECK(f.retryable);
        CHECK(f.status == 503);
        CHECK(f.which == target::hawkbit);
        CHECK(state["thingsboard"] == "decommissioned");  // done before the failure: skipped on retry
        CHECK(b.tb.device("dev-5").is_null());
        auto r = decommission_job(d, state, tb, hb);
        CHECK(r.thingsboard == "already");
        CHECK(r.hawkbit == "deleted");
        CHECK(b.hb.state()["targets"] == 0);
    }
    SECTION("a ThingsBoard 5xx on the delete is retryable; other 4xx are not") {
        b.tb.set_faults({.fail_next = 1, .fail_status = 500});
        CHECK(failure_of([&] { decommission_job(d, state, tb, hb); }).retryable);
        b.tb.set_faults({.fail_next = 1, .fail_status = 400});
        CHECK_FALSE(failure_of([&] { decommission_job(d, state, tb, hb); }).retryable);
        CHECK_FALSE(b.tb.device("dev-5").is_null());
    }
    SECTION("a decommissioned device is not registered again by a later first-connect job") {
        decommission_job(d, state, tb, hb);
        state["decommissioned"] = "1795000200";
        CHECK(register_job(reg, state, tb, hb).decommissioned);
        CHECK(b.tb.device("dev-5").is_null());
        CHECK(b.hb.state()["targets"] == 0);
    }
}

namespace {

/// As an operator's rollout would leave one: a pending action on the target (fake control path).
std::int64_t add_action(const fakes::fake_hawkbit& hb, const std::string& controller_id, const char* status = "pending") {
    httplib::Client c("127.0.0.1", hb.port());
    auto r = c.Post(("/_fake/targets/" + controller_id + "/actions").c_str(), json{{"status", status}}.dump(), "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return json::parse(r->body)["id"].get<std::int64_t>();
}

std::int64_t requests(const json& state) { return state["requests"].get<std::int64_t>(); }

}  // namespace

TEST_CASE("ThingsBoard: a configured device profile that does not exist pauses registrations; never created",
          "[worker][thingsboard][setup]") {
    backends b;
    b.config.thingsboard.device_profile = "sensr";  // the typo of "sensor"
    auto tb = b.thingsboard();
    auto f = failure_of([&] { tb.register_device(make_job("d1")); });
    CHECK(f.paused);
    CHECK(f.which == target::thingsboard);
    CHECK(std::string(f.what()).find("device profile 'sensr' not found in ThingsBoard: registrations paused; create it "
                                     "or fix thingsboard_device_profile") != std::string::npos);
    CHECK(b.tb.state()["devices"] == 0);
    CHECK(b.tb.state()["profiles_created"] == 0);  // a `type` would have made an empty "sensr"
    CHECK(b.metrics.setup_paused[0] == 1);
    CHECK(b.metrics.setup_missing == 1);
    // Inside the interval every job waits without a request.
    const auto before = requests(b.tb.state());
    for (int i = 0; i < 5; ++i) CHECK(failure_of([&] { tb.register_device(make_job("d1")); }).paused);
    CHECK(requests(b.tb.state()) == before);
    CHECK(b.metrics.setup_missing == 1);

    const std::string id = b.tb.add_device_profile("sensr");
    std::this_thread::sleep_for(b.tb_setup.gate().remaining() + std::chrono::milliseconds(20));
    CHECK(tb.register_device(make_job("d1")).action == "created");
    CHECK(b.tb.device("d1")["deviceProfileId"]["id"] == id);
    CHECK(b.metrics.setup_paused[0] == 0);
    // Looked up once: another device costs a lookup, a create and the attribute write only.
    const auto resolved = requests(b.tb.state());
    CHECK(tb.register_device(make_job("d2")).action == "created");
    CHECK(requests(b.tb.state()) - resolved == 3);
    CHECK(b.tb.device("d2")["deviceProfileId"]["id"] == id);
}

TEST_CASE("ThingsBoard: no configured profile is the tenant's default, without a lookup or a `type`",
          "[worker][thingsboard][setup]") {
    backends b;
    auto tb = b.thingsboard();
    tb.register_device(make_job("d1"));
    CHECK(b.tb.device("d1")["type"] == "default");
    CHECK(b.tb.state()["profiles_created"] == 0);
    CHECK(b.tb.state()["requests"] == 4);  // login, lookup, create, attributes
}

TEST_CASE("ThingsBoard: customer assignment (by title or id) once, and the label template", "[worker][thingsboard][setup]") {
    backends b({.customers = {"ACME Corp"}});
    b.config.thingsboard.customer = "ACME Corp";
    b.config.thingsboard.label = "Sensor {device_id} ({serial})";
    auto tb = b.thingsboard();
    const job j = make_job("d1");
    auto r = tb.register_device(j);
    CHECK(r.assigned);
    const std::string customer = tb.find_customer("ACME Corp");
    REQUIRE_FALSE(customer.empty());
    json d = b.tb.device("d1");
    CHECK(d["customerId"]["id"] == customer);
    CHECK(d["label"] == "Sensor d1 (" + j.cert.serial_hex + ")");
    CHECK(b.tb.state()["customer_assignments"] == 1);
    CHECK(b.metrics.thingsboard_customer_assignments == 1);

    SECTION("a retry or renewal does not assign again") {
        CHECK_FALSE(tb.register_device(j).assigned);
        CHECK_FALSE(tb.register_device(make_job("d1", job_type::certificate_changed)).assigned);
        CHECK(b.tb.state()["customer_assignments"] == 1);
    }
    SECTION("the customer's id works as well; an unknown title or id is not found") {
        CHECK(tb.find_customer(customer) == customer);
        CHECK(tb.find_customer("ACME").empty());
        CHECK(tb.find_customer("00000000-0000-1000-8000-000000000000").empty());
    }
    SECTION("a missing customer pauses with its own line") {
        backends other({.customers = {"ACME Corp"}});
        other.config.thingsboard.customer = "ACME Crop";
        auto tb2 = other.thingsboard();
        auto f = failure_of([&] { tb2.register_device(make_job("d2")); });
        CHECK(f.paused);
        CHECK(std::string(f.what()).find("customer 'ACME Crop' not found in ThingsBoard: registrations paused; create it "
                                         "or fix thingsboard_customer") != std::string::npos);
    }
}

TEST_CASE("Label templates: {device_id} and {serial}; anything else in braces is refused", "[worker][config]") {
    CHECK(expand_label("{device_id}", "d-1", "0A") == "d-1");
    CHECK(expand_label("Meter {serial} / {device_id}", "d-1", "0A") == "Meter 0A / d-1");
    CHECK(expand_label("fixed text", "d-1", "0A") == "fixed text");
    CHECK_THROWS_AS(expand_label("{id}", "d-1", "0A"), std::invalid_argument);
    CHECK_THROWS_AS(expand_label("{device_id", "d-1", "0A"), std::invalid_argument);
    CHECK_THROWS_WITH(parse_worker_config(minimal + "thingsboard_label {name}\n", {}),
                      Catch::Contains("thingsboard_label") && Catch::Contains("{device_id}"));
    auto c = parse_worker_config(minimal + "thingsboard_device_profile sensor v2\nthingsboard_customer ACME\n"
                                           "hawkbit_target_type gateway\ndecommission_mode keep\n", {});
    CHECK(c.thingsboard.device_profile == "sensor v2");
    CHECK(c.thingsboard.customer == "ACME");
    CHECK(c.hawkbit.target_type == "gateway");
    CHECK(c.decommission == decommission_mode::keep);
    CHECK(parse_worker_config(minimal, {}).decommission == decommission_mode::delete_);
    CHECK(parse_worker_config(minimal, {}).thingsboard.device_profile.empty());
    CHECK(parse_worker_config(minimal + "thingsboard_device_type sensor\n", {}).thingsboard.device_profile == "sensor");
    CHECK_THROWS_WITH(parse_worker_config(minimal + "decommission_mode archive\n", {}), Catch::Contains("delete or keep"));
}

TEST_CASE("hawkBit: the target type is looked up once by exact name; missing pauses", "[worker][hawkbit][setup]") {
    backends b({}, {.target_types = {"gateway", "edge box"}});
    auto hb = b.hawkbit();
    CHECK(hb.find_target_type("gateway") == "1");
    CHECK(hb.find_target_type("edge box") == "2");  // quoted in the FIQL query
    CHECK(hb.find_target_type("gatway").empty());
    b.config.hawkbit.target_type = "edge box";
    CHECK(hb.ensure_target("d1") == "created");
    CHECK(b.hb.target("d1")["targetType"] == 2);
    CHECK(b.hb.target("d1")["targetTypeName"] == "edge box");

    backends m({}, {.target_types = {"gateway"}});
    m.config.hawkbit.target_type = "gatway";
    auto hb2 = m.hawkbit();
    auto f = failure_of([&] { hb2.ensure_target("d1"); });
    CHECK(f.paused);
    CHECK(std::string(f.what()).find("target type 'gatway' not found in hawkBit: registrations paused; create it or fix "
                                     "hawkbit_target_type") != std::string::npos);
    CHECK(m.hb.state()["targets"] == 0);
    CHECK(m.metrics.setup_paused[1] == 1);
}

TEST_CASE("hawkBit: target metadata is created, a 409 becomes an update, a renewal updates it",
          "[worker][hawkbit][metadata]") {
    registered_device fixture("m1");
    // References, not a structured binding: clang 14 cannot capture those in lambdas.
    auto& b = fixture.b;
    auto& tb = fixture.tb;
    auto& hb = fixture.hb;
    auto& j = fixture.j;
    auto& state = fixture.state;
    CHECK(b.hb.state()["creates"] == 1);
    json meta = b.hb.target("m1")["metadata"];
    CHECK(meta["devicegate.serial"] == j.cert.serial_hex);
    CHECK(meta["devicegate.fingerprintSha256"] == j.cert.fingerprint_sha256);
    CHECK(meta["devicegate.notAfter"].get<std::string>().size() == 20);  // 2027-01-01T00:00:00Z
    CHECK(state[hawkbit_fingerprint_field] == j.cert.fingerprint_sha256);

    SECTION("a renewal writes the new certificate's metadata (409 on create -> PUT)") {
        const job renewed = make_job("m1", job_type::certificate_changed);
        state["fingerprint"] = renewed.cert.fingerprint_sha256;
        auto r = register_job(renewed, state, tb, hb);
        CHECK(r.hawkbit == "exists");
        meta = b.hb.target("m1")["metadata"];
        CHECK(meta["devicegate.serial"] == renewed.cert.serial_hex);
        CHECK(meta["devicegate.fingerprintSha256"] == renewed.cert.fingerprint_sha256);
        CHECK(b.metrics.hawkbit_metadata_writes == 6);
    }
    SECTION("some keys exist, some do not: each ends with the job's value") {
        backends c;
        auto hb2 = c.hawkbit();
        hb2.ensure_target("m2");
        CHECK(hb2.write_metadata("m2", {{"devicegate.serial", "OLD"}}) == "created");
        CHECK(hb2.write_metadata("m2", hawkbit_metadata(j)) == "updated");
        json m2 = c.hb.target("m2")["metadata"];
        CHECK(m2.size() == 3);
        CHECK(m2["devicegate.serial"] == j.cert.serial_hex);
        CHECK(m2["devicegate.fingerprintSha256"] == j.cert.fingerprint_sha256);
    }
    SECTION("the same job again: nothing to do") {
        const auto before = requests(b.hb.state());
        CHECK(register_job(j, state, tb, hb).hawkbit == "already");
        CHECK(requests(b.hb.state()) == before);
    }
}

TEST_CASE("hawkBit: a DosFilter 429 is retryable; a quota 403 is permanent and named", "[worker][hawkbit]") {
    SECTION("429: status only, no body; transient") {
        backends b({}, {.dos_filter = true, .dos_max_write = 0});
        auto hb = b.hawkbit();
        target_failure f(target::hawkbit, false, 0, "", "");
        bool refused = false;
        for (int i = 0; i < 5 && !refused; ++i) {
            try {
                hb.ensure_target("dos-" + std::to_string(i));
            } catch (const target_failure& e) {
                f = e;
                refused = true;
            }
        }
        REQUIRE(refused);
        CHECK(f.status == 429);
        CHECK(f.retryable);
        CHECK_FALSE(f.quota);
        CHECK(f.body_excerpt.empty());
        CHECK(b.metrics.target_errors[1][static_cast<std::size_t>(error_kind::http_429)] == 1);
    }
    SECTION("a Retry-After in seconds (from a proxy: neither product sends one) is kept; a date is not") {
        backends b;
        auto hb = b.hawkbit();
        b.hb.set_faults({.fail_next = 1, .fail_status = 429, .retry_after = "2"});
        CHECK(failure_of([&] { hb.ensure_target("r1"); }).retry_after == std::chrono::seconds(2));
        b.hb.set_faults({.fail_next = 1, .fail_status = 503, .retry_after = "Wed, 21 Oct 2026 07:28:00 GMT"});
        CHECK(failure_of([&] { hb.ensure_target("r1"); }).retry_after.count() == 0);
        b.hb.set_faults({.fail_next = 1, .fail_status = 400, .retry_after = "2"});
        CHECK(failure_of([&] { hb.ensure_target("r1"); }).retry_after.count() == 0);  // only with 429 / 503
    }
    SECTION("403 quota (too many metadata entries): permanent, the quota's errorCode in the message") {
        backends b({}, {.max_metadata_per_target = 2});
        auto tb = b.thingsboard();
        auto hb = b.hawkbit();
        const job j = make_job("q1");
        std::map<std::string, std::string> state{{"fingerprint", j.cert.fingerprint_sha256}};
        auto f = failure_of([&] { register_job(j, state, tb, hb); });
        CHECK(f.quota);
        CHECK_FALSE(f.retryable);
        CHECK(f.status == 403);
        CHECK(std::string(f.what()).find("hawkBit quota exceeded (hawkbit.server.error.quota.tooManyEntries)") != std::string::npos);
        CHECK(b.hb.state()["quota_refusals"] == 1);
    }
    SECTION("only a quota errorCode makes a 403 a quota refusal") {
        backends b;
        b.hb.set_faults({.fail_next = 1, .fail_status = 403});  // the fake answers a quota body
        auto hb = b.hawkbit();
        CHECK(failure_of([&] { hb.ensure_target("x"); }).quota);
        CHECK(quota_code(R"({"errorCode":"hawkbit.server.error.repo.entityReadOnly"})").empty());
        CHECK(quota_code("not json").empty());
    }
}

TEST_CASE("decommission_job keep mode: ThingsBoard credentials replaced and revoked attribute; hawkBit actions "
          "canceled and tagged; idempotent",
          "[worker][decommission][keep]") {
    registered_device fixture("k1");
    // References, not a structured binding: clang 14 cannot capture those in lambdas.
    auto& b = fixture.b;
    auto& tb = fixture.tb;
    auto& hb = fixture.hb;
    auto& reg = fixture.j;
    auto& state = fixture.state;
    const std::string uuid = state["thingsboard_id"];
    const auto pending = add_action(b.hb, "k1");
    const auto finished = add_action(b.hb, "k1", "finished");
    const job d = parse_job(encode_decommission_job("k1", reg.cert.serial_hex, reg.cert.fingerprint_sha256, "lost", 1795000100));

    auto r = decommission_job(d, state, tb, hb, decommission_mode::keep);
    CHECK(r.thingsboard == "revoked");
    CHECK(r.hawkbit == "revoked");
    json dev = b.tb.device("k1");
    REQUIRE_FALSE(dev.is_null());  // kept
    CHECK(dev["credentials"]["credentialsType"] == "ACCESS_TOKEN");
    CHECK(dev["credentials"]["credentialsId"].get<std::string>().size() == 32);
    CHECK(dev["credentials"]["credentialsValue"].is_null());  // the certificate is gone
    CHECK(dev["server_attributes"]["revoked"]["value"] == true);
    CHECK(dev["server_attributes"]["revokedTime"]["value"] == 1795000100000LL);
    CHECK(dev["server_attributes"]["revokedReason"]["value"] == "lost");
    json t = b.hb.target("k1");
    REQUIRE_FALSE(t.is_null());
    CHECK(t["tags"] == json::array({"devicegate-revoked"}));
    CHECK(t["actions"][std::to_string(pending)] == "canceled");
    CHECK(t["actions"][std::to_string(finished)] == "finished");
    CHECK(state["thingsboard"] == "decommissioned");
    CHECK(state["thingsboard_id"] == uuid);  // the device is still there
    CHECK(state["hawkbit"] == "decommissioned");
    CHECK(b.metrics.thingsboard_credentials_revoked == 1);
    CHECK(b.metrics.hawkbit_actions_canceled == 1);

    SECTION("the old certificate no longer belongs to the device: another device may hold it") {
        job clone = reg;
        clone.cert.device_id = "k1-clone";
        CHECK(tb.register_device(clone).action == "created");  // refused as "already assigned" before
    }
    SECTION("a replay without the state changes nothing more") {
        std::map<std::string, std::string> fresh;
        const std::string token = dev["credentials"]["credentialsId"];
        auto again = decommission_job(d, fresh, tb, hb, decommission_mode::keep);
        CHECK(again.thingsboard == "revoked");
        CHECK(again.hawkbit == "revoked");
        CHECK(b.tb.device("k1")["credentials"]["credentialsId"] == token);  // not replaced twice
        CHECK(b.metrics.thingsboard_credentials_revoked == 1);
        CHECK(b.hb.state()["tags"] == 1);  // the tag is not created twice
        CHECK(b.hb.target("k1")["tags"].size() == 1);
    }
    SECTION("with the state: no request at all") {
        const auto tb_before = requests(b.tb.state());
        const auto hb_before = requests(b.hb.state());
        auto again = decommission_job(d, state, tb, hb, decommission_mode::keep);
        CHECK(again.thingsboard == "already");
        CHECK(again.hawkbit == "already");
        CHECK(requests(b.tb.state()) == tb_before);
        CHECK(requests(b.hb.state()) == hb_before);
    }
    SECTION("a failure half-way is retried and finishes what is left") {
        std::map<std::string, std::string> fresh{{"fingerprint", reg.cert.fingerprint_sha256}};
        backends c;  // a separate pair so the tag does not exist yet
        auto tb2 = c.thingsboard();
        auto hb2 = c.hawkbit();
        register_job(reg, fresh, tb2, hb2);
        c.hb.set_faults({.path = "/rest/v1/targettags", .fail_next = 1, .fail_status = 503});
        auto f = failure_of([&] { decommission_job(d, fresh, tb2, hb2, decommission_mode::keep); });
        CHECK(f.retryable);
        CHECK(fresh["thingsboard"] == "decommissioned");
        auto done = decommission_job(d, fresh, tb2, hb2, decommission_mode::keep);
        CHECK(done.thingsboard == "already");
        CHECK(done.hawkbit == "revoked");
        CHECK(c.hb.target("k1")["tags"] == json::array({"devicegate-revoked"}));
    }
    SECTION("re-registered (reregister clears the marker): the certificate is back, revoked is false") {
        std::map<std::string, std::string> cleared{{"fingerprint", reg.cert.fingerprint_sha256}};
        auto back = register_job(reg, cleared, tb, hb);
        CHECK(back.thingsboard == "credentials_updated");
        CHECK(back.hawkbit == "exists_untagged");
        CHECK(b.hb.target("k1")["tags"].empty());
        json again = b.tb.device("k1");
        CHECK(again["credentials"]["credentialsType"] == "X509_CERTIFICATE");
        CHECK(again["server_attributes"]["revoked"]["value"] == false);
    }
    SECTION("a device that is in neither target: absent") {
        const job other = parse_job(encode_decommission_job("nobody", "", "", "x", 1));
        std::map<std::string, std::string> none;
        auto a = decommission_job(other, none, tb, hb, decommission_mode::keep);
        CHECK(a.thingsboard == "absent");
        CHECK(a.hawkbit == "absent");
    }
}

TEST_CASE("ThingsBoard restarted with a new signing key: 401/11 on the call and the refresh, one new login",
          "[worker][thingsboard][auth]") {
    backends b;
    auto tb = b.thingsboard();
    tb.register_device(make_job("s1"));
    b.tb.rotate_signing_key();  // every token now fails its signature check: "expired" (JwtTokenFactory)
    CHECK(tb.register_device(make_job("s2")).action == "created");
    CHECK(b.tb.state()["logins"] == 2);
    CHECK(b.tb.state()["refreshes"] == 0);  // the refresh token was refused as well
    CHECK_FALSE(b.tb_gate.paused());  // a refused refresh is no refused login
}
