// One session per device across brokers (issue 16): two real mosquitto processes with the
// plugin, each with its own broker_id, sharing one real redis-server; real TLS clients, one of
// them connecting from a second loopback address (127.0.0.2) as a clone would.
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>

using namespace devicegate::itest;

namespace {

constexpr const char* prefix = "devicegate:";

broker_options fleet_broker(const redis_server& redis, const std::string& id,
                            std::vector<std::pair<std::string, std::string>> extra = {}) {
    broker_options o{.redis = &redis};
    o.plugin_opts = {{"broker_id", id}, {"broker_heartbeat_interval", "200ms"}, {"broker_heartbeat_timeout", "1s"}};
    o.plugin_opts.insert(o.plugin_opts.end(), extra.begin(), extra.end());
    return o;
}

bool registered(const redis_server& redis, const std::string& broker_id, const std::string& device) {
    return redis.integer({"HEXISTS", std::string(prefix) + "sessions:" + broker_id, device}) == 1;
}

/// The device hash the first-connect job writes, which `devicegate-ctl status` and `revoke`
/// (without --force) need. It comes a few ms after the session registry: the job thread
/// batches (job_producer::batch_linger).
bool known_device(const redis_server& redis, const std::string& device) {
    return redis.integer({"HEXISTS", std::string(prefix) + "device:" + device, "fingerprint"}) == 1;
}

/// Two brokers on one Redis, both registered in the fleet.
struct two_brokers {
    redis_server redis;
    std::unique_ptr<broker> a, b;

    explicit two_brokers(std::vector<std::pair<std::string, std::string>> extra = {}) {
        REQUIRE(redis.start());
        a = std::make_unique<broker>(fleet_broker(redis, "fleet-a", extra));
        b = std::make_unique<broker>(fleet_broker(redis, "fleet-b", extra));
        REQUIRE(a->start());
        REQUIRE(b->start());
        REQUIRE(a->wait_for_log("fleet registry up"));
        REQUIRE(b->wait_for_log("fleet registry up"));
    }
    /// `id` connects to A from 127.0.0.1, then (once A registered it) to B from 127.0.0.2.
    std::pair<std::unique_ptr<client>, std::unique_ptr<client>> clone_of(const std::string& id) {
        auto original = device(id);
        REQUIRE(original->connect(a->port()) == 0);
        REQUIRE(eventually([&] { return registered(redis, "fleet-a", id); }));
        auto clone = device(id);
        REQUIRE(clone->connect(b->port(), 5s, "127.0.0.2") == 0);
        return {std::move(original), std::move(clone)};
    }
};

double ms(clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

TEST_CASE("fleet: the same device connecting to broker B ends its session on broker A within the kick latency",
          "[integration][fleet]") {
    two_brokers f;
    std::vector<double> latencies;
    std::unique_ptr<client> previous;
    broker* previous_broker = nullptr;
    // Alternate A, B, A, ...: every new session ends the one on the other broker, including
    // after a bounce back to a broker that held the device before.
    for (int round = 0; round < 6; ++round) {
        broker& here = round % 2 == 0 ? *f.a : *f.b;
        const std::string here_id = round % 2 == 0 ? "fleet-a" : "fleet-b";
        auto dev = device("dev-001");
        REQUIRE(dev->connect(here.port()) == 0);
        const auto connected = clock::now();
        if (previous) {
            REQUIRE(previous->wait_disconnected(5s));
            latencies.push_back(ms(previous->disconnected_at() - connected));
        }
        REQUIRE(eventually([&] { return registered(f.redis, here_id, "dev-001"); }));
        previous = std::move(dev);
        previous_broker = &here;
    }
    std::sort(latencies.begin(), latencies.end());
    WARN("takeover kick latency (CONNACK on the new broker -> old connection closed), ms: min "
         << latencies.front() << " median " << latencies[latencies.size() / 2] << " max " << latencies.back());
    CHECK(latencies.back() < 2000);  // a 100 ms tick plus two Redis round trips; generous under load
    CHECK(previous->connected());    // the newest session stays
    // The last session is on B; A's entry is gone, and each broker logged its takeovers once.
    CHECK(previous_broker == f.b.get());
    CHECK(eventually([&] { return !registered(f.redis, "fleet-a", "dev-001"); }));
    CHECK(registered(f.redis, "fleet-b", "dev-001"));
    CHECK(f.a->wait_for_log("kick client=dev-001 reason=session_taken_over broker=fleet-a new_broker=fleet-b "
                            "new_address=127.0.0.1"));
    CHECK(f.b->wait_for_log("kick client=dev-001 reason=session_taken_over broker=fleet-b new_broker=fleet-a"));
    CHECK(f.a->log().find("possible clone") == std::string::npos);  // one source host
    // A device on one broker only is left alone.
    auto other = device("dev-003");
    REQUIRE(other->connect(f.a->port()) == 0);
    REQUIRE(eventually([&] { return registered(f.redis, "fleet-a", "dev-003"); }));
    std::this_thread::sleep_for(500ms);
    CHECK(other->connected());
}

TEST_CASE("fleet: a clone from a second source address is counted and logged; the older session ends",
          "[integration][fleet]") {
    two_brokers f;
    auto [original, clone] = f.clone_of("dev-002");
    CHECK(f.b->wait_for_log("possible clone device=dev-002 broker=fleet-b address=127.0.0.2 other_broker=fleet-a "
                            "other_address=127.0.0.1 policy=log"));
    CHECK(original->wait_disconnected(5s));
    CHECK(f.a->wait_for_log("kick client=dev-002 reason=session_taken_over broker=fleet-a new_broker=fleet-b "
                            "new_address=127.0.0.2"));
    CHECK(f.a->wait_for_log("clone=yes"));
    CHECK(clone->connected());
    // Counted in the heartbeat (and $SYS fleet/clones).
    CHECK(eventually([&] { return f.redis.command({"HGET", std::string(prefix) + "broker:fleet-b", "clones"}) == "1"; }));
    CHECK_THAT(ctl({"status", "dev-002"}, f.redis.url()).out,
               Catch::Contains("connected:    broker fleet-b since") && Catch::Contains("from 127.0.0.2"));
}

TEST_CASE("fleet: clone_policy refuse ends both sessions of a clone", "[integration][fleet]") {
    two_brokers f(std::vector<std::pair<std::string, std::string>>{{"clone_policy", "refuse"}});
    auto [original, clone] = f.clone_of("dev-002");
    CHECK(original->wait_disconnected(5s));
    CHECK(clone->wait_disconnected(5s));
    CHECK(f.a->wait_for_log("kick client=dev-002 reason=clone_refused broker=fleet-a new_broker=fleet-b"));
    CHECK(f.b->wait_for_log("kick client=dev-002 reason=clone_refused broker=fleet-b new_broker=fleet-a"));
    CHECK(f.b->wait_for_log("possible clone device=dev-002 broker=fleet-b address=127.0.0.2"));
    // Not a ban: the device alone (one source) connects again.
    auto again = device("dev-002");
    CHECK(again->connect(f.a->port()) == 0);
    std::this_thread::sleep_for(500ms);
    CHECK(again->connected());
}

TEST_CASE("fleet: a SIGKILLed broker's registry entries expire after its heartbeat timeout",
          "[integration][fleet]") {
    two_brokers f;
    auto dev = device("dev-004");
    REQUIRE(dev->connect(f.a->port()) == 0);
    REQUIRE(eventually([&] { return registered(f.redis, "fleet-a", "dev-004") && known_device(f.redis, "dev-004"); }));
    CHECK_THAT(ctl({"status", "dev-004"}, f.redis.url()).out, Catch::Contains("connected:    broker fleet-a since"));
    f.a->signal(SIGKILL);
    REQUIRE(f.a->wait_exit(5s));
    const auto killed = clock::now();
    REQUIRE(eventually([&] { return !registered(f.redis, "fleet-a", "dev-004"); }, 5s));
    const auto gone = ms(clock::now() - killed);
    WARN("a SIGKILLed broker's sessions expired after " << gone << " ms (heartbeat timeout 1 s)");
    CHECK(gone <= 2000);
    auto brokers = ctl({"brokers"}, f.redis.url());
    CHECK(brokers.exit_code == 0);
    CHECK_THAT(brokers.out, Catch::Contains("fleet-a  dead") && Catch::Contains("fleet-b  live"));
    CHECK_THAT(brokers.out, Catch::Contains("1 of 2 brokers live"));
    CHECK_THAT(ctl({"status", "dev-004"}, f.redis.url()).out,
               Catch::Contains("connected:    no (no live broker holds a session)"));
    // The device moves to the live broker without a takeover (nothing left to end).
    auto moved = device("dev-004");
    REQUIRE(moved->connect(f.b->port()) == 0);
    CHECK(eventually([&] { return registered(f.redis, "fleet-b", "dev-004"); }));
}

TEST_CASE("fleet: devicegate-ctl brokers lists every broker's view", "[integration][fleet]") {
    two_brokers f;
    auto d1 = device("dev-001");
    auto d2 = device("dev-002");
    REQUIRE(d1->connect(f.a->port()) == 0);
    REQUIRE(d2->connect(f.a->port()) == 0);
    REQUIRE(eventually([&] {
        return f.redis.command({"HGET", std::string(prefix) + "broker:fleet-a", "sessions"}) == "2";
    }));
    auto r = ctl({"brokers"}, f.redis.url());
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::StartsWith("BROKER   STATE HEARTBEAT  SESSIONS  DENYLIST-AGE"));
    // fleet-a: live, heartbeat within the last second, 2 sessions, deny-list synced, no job backlog.
    const auto line_a = r.out.substr(r.out.find("fleet-a"), r.out.find('\n', r.out.find("fleet-a")) - r.out.find("fleet-a"));
    INFO(line_a);
    CHECK_THAT(line_a, Catch::Matches(R"(fleet-a  live  \d+(ms|s) ago +2 +\d+(ms|s) +0 +0 +0 +0\.1\.0 +\S+)"));
    CHECK_THAT(r.out, Catch::Contains("2 of 2 brokers live"));
    // A clean stop signs off at once: dead, and its sessions gone (no wait for the timeout).
    f.a->stop();
    CHECK_FALSE(registered(f.redis, "fleet-a", "dev-001"));
    CHECK_THAT(ctl({"brokers"}, f.redis.url()).out, Catch::Contains("fleet-a  dead") && Catch::Contains("1 of 2 brokers live"));
}

TEST_CASE("fleet: two brokers with one broker_id are reported", "[integration][fleet]") {
    redis_server redis;
    REQUIRE(redis.start());
    broker a(fleet_broker(redis, "same-id")), b(fleet_broker(redis, "same-id"));
    REQUIRE(a.start());
    REQUIRE(b.start());
    const std::string line = "another broker writes the heartbeat of broker_id=same-id";
    CHECK(eventually([&] { return a.log_contains(line) || b.log_contains(line); }, 5s));
}

TEST_CASE("fleet: devicegate-ctl revoke reports how many live brokers acknowledged it", "[integration][fleet]") {
    two_brokers f;
    auto dev = device("dev-005");
    REQUIRE(dev->connect(f.b->port()) == 0);
    REQUIRE(eventually([&] { return registered(f.redis, "fleet-b", "dev-005") && known_device(f.redis, "dev-005"); }));
    auto r = ctl({"revoke", "dev-005"}, f.redis.url());
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("2 broker(s) notified"));
    CHECK_THAT(r.out, Catch::Contains("acknowledged by 2 of 2 live brokers\n"));
    CHECK(dev->wait_disconnected(2s));
    // A frozen broker (still within its heartbeat timeout) does not acknowledge: it is named.
    f.b->signal(SIGSTOP);
    auto frozen = ctl({"revoke", "dev-001", "--force", "--ack-timeout", "300ms"}, f.redis.url());
    f.b->signal(SIGCONT);
    CHECK(frozen.exit_code == 0);
    CHECK_THAT(frozen.out, Catch::Contains("acknowledged by 1 of 2 live brokers (missing: fleet-b;"));
}
