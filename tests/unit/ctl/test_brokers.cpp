// devicegate-ctl brokers, status's "connected:" lines and revoke's acknowledgements, against
// a real redis-server holding what real fleet_registry instances wrote.
#include "ctl_runner.hpp"
#include "devicegate/denylist.hpp"
#include "devicegate/fleet_registry.hpp"
#include "devicegate/revocation_store.hpp"
#include "log_capture.hpp"
#include "redis_process.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace devicegate;
using test::eventually;
using namespace std::chrono_literals;

namespace {

struct fixture {
    test::redis_process server;
    test::log_capture logs;
    std::vector<std::unique_ptr<fleet_registry>> brokers;

    test::ctl_result ctl(const std::vector<std::string>& args) { return test::run_ctl(server.url(), args); }
    fleet_registry& add(const std::string& id, std::chrono::milliseconds timeout = 400ms) {
        fleet_registry::options o{server.options(), redis_model{}, id, 100ms, timeout, clone_policy::log};
        brokers.push_back(std::make_unique<fleet_registry>(o, logs.sink(), [] {
            return heartbeat_extras{std::time(nullptr) - 3, true, 12};
        }));
        brokers.back()->start();
        REQUIRE(eventually([&] { return brokers.back()->link_up(); }));
        return *brokers.back();
    }
    bool registered(const std::string& broker, const std::string& device) {
        return reply_integer(server.command({"HEXISTS", redis_model{}.sessions(broker), device}).get(), "HEXISTS") == 1;
    }
};

}  // namespace

TEST_CASE("ctl brokers: live and dead brokers with their numbers", "[ctl][fleet]") {
    fixture f;
    CHECK_THAT(f.ctl({"brokers"}).out, Catch::StartsWith("no broker has written a heartbeat"));
    auto& a = f.add("broker-a");
    f.add("broker-b");
    a.admitted("dev-1", "127.0.0.1", sha256_digest{0xab, 0x12}, *serial_key_from_hex("0A7A"), "0A7A");
    REQUIRE(eventually([&] { return f.registered("broker-a", "dev-1"); }));
    REQUIRE(eventually([&] { return f.ctl({"brokers"}).out.find("broker-a  live") != std::string::npos; }));
    // The heartbeat after the admission carries the session count.
    REQUIRE(eventually([&] {
        auto out = f.ctl({"brokers"}).out;
        auto line = out.substr(out.find("broker-a"));
        return line.substr(0, line.find('\n')).find(" 1 ") != std::string::npos;
    }));
    f.brokers[1]->stop();  // broker-b dies
    REQUIRE(eventually([&] { return f.ctl({"brokers"}).out.find("broker-b  dead") != std::string::npos; }, 3000ms));
    auto r = f.ctl({"brokers"});
    CHECK(r.code == ctl::ok);
    CHECK_THAT(r.out, Catch::StartsWith("BROKER    STATE HEARTBEAT  SESSIONS  DENYLIST-AGE"));
    CHECK_THAT(r.out, Catch::Contains("JOB-BACKLOG"));
    CHECK_THAT(r.out, Catch::Contains(" 12 "));  // the job backlog the heartbeat reported
    CHECK_THAT(r.out, Catch::Contains(" 0.1.0 "));
    CHECK_THAT(r.out, Catch::Contains("1 of 2 brokers live\n"));
    CHECK(f.ctl({"brokers", "extra"}).code == ctl::usage);
}

TEST_CASE("ctl status: where the device is connected", "[ctl][fleet]") {
    fixture f;
    f.server.command({"HSET", redis_model{}.device("dev-1"), "serial", "0A7A"});
    // Without any broker heartbeat (fleet_sessions off) status says nothing about it.
    CHECK(f.ctl({"status", "dev-1"}).out.find("connected:") == std::string::npos);
    auto& a = f.add("broker-a");
    CHECK_THAT(f.ctl({"status", "dev-1"}).out, Catch::Contains("connected:    no (no live broker holds a session)\n"));
    a.admitted("dev-1", "127.0.0.5", sha256_digest{0xab, 0x12}, *serial_key_from_hex("0A7A"), "0A7A");
    REQUIRE(eventually([&] { return f.registered("broker-a", "dev-1"); }));
    auto out = f.ctl({"status", "dev-1"}).out;
    CHECK_THAT(out, Catch::Contains("connected:    broker broker-a since 20"));
    CHECK_THAT(out, Catch::Contains(" from 127.0.0.5 (serial 0A7A)\n"));
    CHECK(out.find("warning:") == std::string::npos);
    // Two brokers at once (a takeover under way, or a clone): both are shown, with a warning.
    f.server.command({"HSET", redis_model{}.sessions("broker-b"), "dev-1",
                      encode_fleet_session({"z.1", unix_ms_now(), "127.0.0.6", "ab12", "0A7A"})});
    f.server.command({"ZADD", redis_model{}.brokers(), std::to_string(unix_ms_now() + 60000), "broker-b"});
    out = f.ctl({"status", "dev-1"}).out;
    CHECK_THAT(out, Catch::Contains("broker broker-b since"));
    CHECK_THAT(out, Catch::Contains("warning:      sessions on 2 brokers"));
}

TEST_CASE("ctl revoke: how many live brokers acknowledged", "[ctl][fleet]") {
    fixture f;
    f.server.command({"HSET", redis_model{}.device("dev-1"), "serial", "0A7A"});
    auto& a = f.add("broker-a");
    f.add("broker-b");
    // broker-a applies deny-list changes (as its tick would); broker-b never does.
    std::atomic<bool> stop{false};
    revocation_subscription sub(f.server.options(), redis_model{});  // subscribed before the revoke
    std::thread applier([&] {
        while (!stop) {
            if (auto change = sub.next_change(50ms)) {
                kick_request k;
                k.device_ids = {parse_denylist_change(*change).value};
                k.why = reason::revoked_denylist;
                a.acknowledge({k});
            }
        }
    });
    auto r = f.ctl({"revoke", "dev-1", "--ack-timeout", "500ms"});
    stop = true;
    applier.join();
    CHECK(r.code == ctl::ok);
    CHECK_THAT(r.out, Catch::Contains("acknowledged by 1 of 2 live brokers (missing: broker-b;"));
    // Revoked again: nothing is new to the brokers, so no ack is expected.
    CHECK_THAT(f.ctl({"revoke", "dev-1"}).out, Catch::Contains("already revoked"));
    // --ack-timeout 0: no wait, no line.
    CHECK(f.ctl({"unrevoke", "dev-1"}).code == ctl::ok);
    auto no_wait = f.ctl({"revoke", "dev-1", "--ack-timeout", "0"});
    CHECK(no_wait.code == ctl::ok);  // "0" as the usage spells it (bench/revoke_bench passes it)
    CHECK_THAT(no_wait.out, Catch::Contains("revoked device dev-1"));
    CHECK(no_wait.out.find("acknowledged") == std::string::npos);
    auto bad = f.ctl({"revoke", "dev-1", "--ack-timeout", "soon"});
    CHECK(bad.code == ctl::usage);
    CHECK_THAT(bad.err, Catch::Contains("--ack-timeout \"soon\""));
}
