// The fleet session registry: the pure rules (which session ends, what is a clone, the wire
// formats), then two fleet_registry instances ("brokers" a and b) against one real
// redis-server: a newer session on b ends a's older one through a's kick list, a bounce
// back keeps the newest, clones are counted, a dead broker's entries expire, acks land.
#include "devicegate/fleet_registry.hpp"
#include "devicegate/gate.hpp"
#include "log_capture.hpp"
#include "redis_process.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <thread>

using namespace devicegate;
using test::eventually;
using namespace std::chrono_literals;

namespace {

fleet_session session_at(std::int64_t at, std::string address = "10.0.0.1", std::string sid = "r.1") {
    return {std::move(sid), at, std::move(address), "ab12", "0A7A"};
}

}  // namespace

TEST_CASE("fleet: the older session ends, on whichever broker finds the conflict", "[fleet]") {
    const auto old_one = session_at(1000, "10.0.0.1", "x.1");
    const auto new_one = session_at(2000, "10.0.0.1", "y.1");
    // The newer broker finds the older session: it kicks the other broker's.
    auto o = resolve_conflict(new_one, "b", old_one, "a", clone_policy::log);
    CHECK(o.kick_other);
    CHECK_FALSE(o.kick_mine);
    CHECK_FALSE(o.clone);
    // The older broker finds the newer session (it looked up last): it ends its own.
    o = resolve_conflict(old_one, "a", new_one, "b", clone_policy::log);
    CHECK(o.kick_mine);
    CHECK_FALSE(o.kick_other);
    // Same millisecond: the broker id decides, the same way on both sides.
    const auto same_a = session_at(1000, "10.0.0.1", "x.1"), same_b = session_at(1000, "10.0.0.1", "y.1");
    CHECK(older_session(same_a, "a", same_b, "b"));
    CHECK_FALSE(older_session(same_b, "b", same_a, "a"));
    CHECK(resolve_conflict(same_a, "a", same_b, "b", clone_policy::log).kick_mine);
    CHECK(resolve_conflict(same_b, "b", same_a, "a", clone_policy::log).kick_other);
    // Its own entry is no conflict.
    o = resolve_conflict(old_one, "a", old_one, "a", clone_policy::refuse);
    CHECK_FALSE((o.kick_mine || o.kick_other || o.clone));
}

TEST_CASE("fleet: a second source address is a possible clone; refuse ends both", "[fleet]") {
    const auto a = session_at(1000, "10.0.0.1", "x.1"), b = session_at(2000, "10.0.0.2", "y.1");
    auto o = resolve_conflict(b, "b", a, "a", clone_policy::log);
    CHECK(o.clone);
    CHECK(o.kick_other);
    CHECK_FALSE(o.kick_mine);
    o = resolve_conflict(b, "b", a, "a", clone_policy::refuse);
    CHECK(o.clone);
    CHECK(o.kick_other);
    CHECK(o.kick_mine);
    // IP only; unknown addresses are never a clone.
    CHECK(same_source("127.0.0.1", "127.0.0.1"));
    CHECK_FALSE(same_source("127.0.0.1", "127.0.0.2"));
    CHECK_FALSE(same_source("::1", "127.0.0.1"));
    CHECK(same_source("-", "127.0.0.2"));
    CHECK(same_source("10.0.0.1", ""));
}

TEST_CASE("fleet: session entries and takeover messages round-trip; other data is refused", "[fleet]") {
    const auto s = session_at(1795000000123, "192.0.2.7", "0123abcd.42");
    CHECK(parse_fleet_session(encode_fleet_session(s)) == s);
    const takeover_message m{"dev-1", "0123abcd.42", "broker-b", 1795000000456, "192.0.2.8", true, true};
    CHECK(parse_takeover(encode_takeover(m)) == m);
    CHECK_THROWS_AS(parse_fleet_session("not json"), std::invalid_argument);
    CHECK_THROWS_AS(parse_fleet_session(R"({"sid":"x","at":"soon","addr":"-","fp":"","serial":""})"),
                    std::invalid_argument);
    CHECK_THROWS_AS(parse_fleet_session(R"({"sid":"","at":1,"addr":"-","fp":"","serial":""})"), std::invalid_argument);
    CHECK_THROWS_AS(parse_takeover(R"({"device":"dev-1","broker":"b","at":1,"addr":"-"})"), std::invalid_argument);
    CHECK_THROWS_AS(parse_takeover(R"(["device"])"), std::invalid_argument);
}

TEST_CASE("fleet: deny-list serial keys spell as devicegate-ctl writes them", "[fleet]") {
    CHECK(serial_key_hex(*serial_key_from_hex("0x0a:7a")) == "0A7A");
    CHECK(serial_key_hex(*serial_key_from_hex("00FF01")) == "FF01");
    CHECK(serial_key_hex(*serial_key_from_hex("0")) == "00");
    serial_key hashed;
    hashed.bytes[0] = 0xFF;  // a non-conforming serial, keyed by a digest
    CHECK(serial_key_hex(hashed).empty());
}

namespace {

/// Two brokers' registries on one Redis; the test thread is both brokers' thread.
struct fleet_fixture {
    test::redis_process server;
    test::log_capture logs;
    redis_model model;
    std::vector<std::unique_ptr<fleet_registry>> brokers;

    fleet_registry& add(const std::string& id, clone_policy policy = clone_policy::log) {
        fleet_registry::options o{server.options(), model, id, 100ms, 400ms, policy};
        brokers.push_back(std::make_unique<fleet_registry>(o, logs.sink(), [] {
            return heartbeat_extras{1795000000, true, 7};
        }));
        brokers.back()->start();
        REQUIRE(eventually([&] { return brokers.back()->link_up(); }));
        return *brokers.back();
    }
    // What each broker's session registry holds: device -> the fleet's session number.
    std::map<const fleet_registry*, std::map<std::string, std::uint64_t>> current;
    std::uint64_t admit(fleet_registry& r, const std::string& device, const char* address = "127.0.0.1") {
        return current[&r][device] = r.admitted(device, address, sha256_digest{0xab, 0x12}, *serial_key_from_hex("0A7A"), "0A7A");
    }
    void disconnect(fleet_registry& r, const std::string& device) {
        r.disconnected(device, current[&r][device]);
        current[&r].erase(device);
    }
    fleet_registry::current_fn current_of(fleet_registry& r) {
        return [this, &r](const std::string& device) {
            auto it = current[&r].find(device);
            return it == current[&r].end() ? std::uint64_t{0} : it->second;
        };
    }
    std::optional<std::string> entry(const std::string& broker, const std::string& device) {
        return reply_optional_string(server.command({"HGET", model.sessions(broker), device}).get(), "HGET");
    }
    /// Kicks taken from `r` within `wait` (as its broker's ticks would take them).
    std::vector<std::pair<std::string, reason>> kicks_within(fleet_registry& r, std::chrono::milliseconds wait) {
        std::vector<std::pair<std::string, reason>> all;
        for (auto deadline = std::chrono::steady_clock::now() + wait; std::chrono::steady_clock::now() < deadline;) {
            for (auto& k : r.take_kicks(current_of(r))) all.push_back(std::move(k));
            if (!all.empty()) break;
            std::this_thread::sleep_for(5ms);
        }
        return all;
    }
};

using kick_list = std::vector<std::pair<std::string, reason>>;

}  // namespace

TEST_CASE("fleet: a session is registered, expires with the heartbeat, and leaves on disconnect", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    f.admit(a, "dev-1", "127.0.0.1");
    REQUIRE(eventually([&] { return f.entry("a", "dev-1").has_value(); }));
    const auto s = parse_fleet_session(*f.entry("a", "dev-1"));
    CHECK(s.address == "127.0.0.1");
    CHECK(s.serial == "0A7A");
    CHECK(std::llabs(s.connected_at - unix_ms_now()) < 5000);
    // One expiry for the whole hash, renewed by the heartbeat (400 ms here).
    const auto ttl = reply_integer(f.server.command({"PTTL", f.model.sessions("a")}).get(), "PTTL");
    CHECK(ttl > 0);
    CHECK(ttl <= 400);
    std::this_thread::sleep_for(600ms);  // longer than the timeout: only the heartbeat keeps it
    CHECK(f.entry("a", "dev-1").has_value());
    // The heartbeat: listed live, with its numbers.
    redis_connection redis(f.server.options());
    auto listed = load_brokers(redis, f.model);
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].id == "a");
    CHECK(listed[0].live(unix_ms_now()));
    CHECK(listed[0].number(broker_field::sessions) == 1);
    CHECK(listed[0].number(broker_field::job_backlog) == 7);
    CHECK(listed[0].number(broker_field::denylist_synced_at) == 1795000000);
    // A disconnect of an older session (a replaced connection) does not remove it; its own does.
    a.disconnected("dev-1", f.current[&a]["dev-1"] - 1);
    std::this_thread::sleep_for(200ms);
    CHECK(f.entry("a", "dev-1").has_value());
    f.disconnect(a, "dev-1");
    CHECK(eventually([&] { return !f.entry("a", "dev-1").has_value(); }));
    CHECK(a.sessions() == 0);
}

TEST_CASE("fleet: a newer session on another broker ends the older one", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    auto& b = f.add("b");
    f.admit(a, "dev-1", "127.0.0.1");
    REQUIRE(eventually([&] { return f.entry("a", "dev-1").has_value(); }));
    f.admit(b, "dev-1", "127.0.0.1");
    CHECK(f.kicks_within(a, 3000ms) == kick_list{{"dev-1", reason::session_taken_over}});
    CHECK(f.logs.contains("kick client=dev-1 reason=session_taken_over broker=a new_broker=b new_address=127.0.0.1"));
    CHECK(f.logs.contains("clone=no"));
    CHECK(a.takeovers() == 1);
    CHECK(b.take_kicks(f.current_of(b)).empty());  // the newer session stays
    CHECK(b.clones() == 0);
    // The kick is performed; a's DISCONNECT removes a's entry; b's stays.
    f.disconnect(a, "dev-1");
    CHECK(eventually([&] { return !f.entry("a", "dev-1").has_value(); }));
    CHECK(f.entry("b", "dev-1").has_value());
}

TEST_CASE("fleet: a device that bounced back keeps its newest session", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    auto& b = f.add("b");
    f.admit(a, "dev-1", "127.0.0.1");
    REQUIRE(eventually([&] { return f.entry("a", "dev-1").has_value(); }));
    f.admit(b, "dev-1", "127.0.0.1");
    std::this_thread::sleep_for(2ms);
    // Back on a before a's tick took b's kick: the kick names the old session only.
    f.disconnect(a, "dev-1");
    f.admit(a, "dev-1", "127.0.0.1");
    // b's session is now the older one: b ends it (a's lookup found it).
    CHECK(f.kicks_within(b, 3000ms) == kick_list{{"dev-1", reason::session_taken_over}});
    CHECK(f.kicks_within(a, 500ms).empty());
}

TEST_CASE("fleet: a clone from another address is counted and logged; refuse ends both", "[fleet][redis]") {
    const auto policy = GENERATE(clone_policy::log, clone_policy::refuse);
    fleet_fixture f;
    auto& a = f.add("a", policy);
    auto& b = f.add("b", policy);
    f.admit(a, "dev-2", "10.0.0.1");
    REQUIRE(eventually([&] { return f.entry("a", "dev-2").has_value(); }));
    f.admit(b, "dev-2", "10.0.0.2");
    const reason why = policy == clone_policy::refuse ? reason::clone_refused : reason::session_taken_over;
    CHECK(f.kicks_within(a, 3000ms) == kick_list{{"dev-2", why}});
    CHECK(b.clones() == 1);
    CHECK(f.logs.contains("possible clone device=dev-2 broker=b address=10.0.0.2 other_broker=a other_address=10.0.0.1"));
    CHECK(f.logs.contains("clone=yes"));
    if (policy == clone_policy::refuse) {
        CHECK(f.kicks_within(b, 1000ms) == kick_list{{"dev-2", reason::clone_refused}});
    } else {
        CHECK(f.kicks_within(b, 300ms).empty());
    }
}

TEST_CASE("fleet: a second address on the same broker is a possible clone too", "[fleet][redis]") {
    fleet_fixture f;
    auto& r = f.add("a", clone_policy::refuse);
    f.admit(r, "dev-1", "10.0.0.1");
    f.admit(r, "dev-1", "10.0.0.1");  // a reconnect from the same host (mosquitto ended the old one)
    REQUIRE(eventually([&] { return f.entry("a", "dev-1").has_value(); }));
    CHECK(r.clones() == 0);
    f.admit(r, "dev-1", "10.0.0.9");
    CHECK(eventually([&] { return r.clones() == 1; }));
    CHECK(f.logs.contains("possible clone device=dev-1 broker=a address=10.0.0.9 other_broker=a other_address=10.0.0.1"));
    CHECK(f.kicks_within(r, 1000ms) == kick_list{{"dev-1", reason::clone_refused}});  // the new one; mosquitto ends the old
}

TEST_CASE("fleet: a dead broker's sessions expire; it stays listed as dead", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    f.admit(a, "dev-1", "127.0.0.1");
    REQUIRE(eventually([&] { return f.entry("a", "dev-1").has_value(); }));
    a.stop();  // no more heartbeats, nothing removed: as after a SIGKILL
    const auto stopped = std::chrono::steady_clock::now();
    REQUIRE(eventually([&] { return !f.entry("a", "dev-1").has_value(); }, 3000ms));
    CHECK(std::chrono::steady_clock::now() - stopped <= 1000ms);  // the 400 ms timeout, with slack
    redis_connection redis(f.server.options());
    CHECK(live_brokers(redis, f.model, unix_ms_now()).empty());
    auto listed = load_brokers(redis, f.model);
    REQUIRE(listed.size() == 1);
    CHECK_FALSE(listed[0].live(unix_ms_now()));
    CHECK(locate_device(redis, f.model, "dev-1", unix_ms_now()).empty());
}

TEST_CASE("fleet: a restarted Redis gets the registry back", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    f.admit(a, "dev-1", "127.0.0.1");
    REQUIRE(eventually([&] { return f.entry("a", "dev-1").has_value(); }));
    f.server.kill();
    f.server.start();  // empty: no persistence
    CHECK(eventually([&] { return f.entry("a", "dev-1").has_value(); }, 8000ms));
    CHECK(f.logs.contains("fleet registry link down"));
}

TEST_CASE("fleet: a hung Redis logs the kick queue down once, and up again when it answers", "[fleet][redis]") {
    test::redis_process server;
    test::log_capture logs;
    auto options = server.options();
    options.connect_timeout = options.command_timeout = 300ms;
    fleet_registry r({options, redis_model{}, "a", 100ms, 400ms, clone_policy::log}, logs.sink(), [] {
        return heartbeat_extras{};
    });
    r.start();
    REQUIRE(eventually([&] { return r.link_up(); }));
    server.freeze(true);
    REQUIRE(eventually([&] { return logs.contains("fleet kick queue down"); }, 3000ms));
    std::this_thread::sleep_for(2000ms);  // several reconnects: each connect succeeds, BLPOP times out
    server.freeze(false);
    CHECK(eventually([&] { return logs.contains("fleet kick queue up again"); }, 5000ms));
    CHECK(logs.count("fleet kick queue down") == 1);
    r.stop();
}

TEST_CASE("fleet: applied revocations are acknowledged under revoke-ack", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    kick_request by_device;
    by_device.device_ids = {"dev-9"};
    by_device.why = reason::revoked_denylist;
    kick_request by_serial;
    by_serial.serials = {*serial_key_from_hex("0A7A")};
    by_serial.why = reason::revoked_denylist;
    kick_request crl;  // not a deny-list change: no ack
    crl.device_ids = {"dev-8"};
    crl.why = reason::revoked_crl;
    a.acknowledge({by_device, by_serial, crl});
    auto members = [&](const std::string& key) {
        return reply_strings(f.server.command({"SMEMBERS", key}).get(), "SMEMBERS");
    };
    CHECK(eventually([&] { return members(f.model.revoke_ack("device", "dev-9")) == std::vector<std::string>{"a"}; }));
    CHECK(eventually([&] { return members(f.model.revoke_ack("serial", "0A7A")) == std::vector<std::string>{"a"}; }));
    CHECK(members(f.model.revoke_ack("device", "dev-8")).empty());
    const auto ttl =
        reply_integer(f.server.command({"PTTL", f.model.revoke_ack("device", "dev-9")}).get(), "PTTL");
    CHECK(ttl > 0);
    CHECK(ttl <= revoke_ack_ttl_ms);
}

TEST_CASE("fleet: a malformed kick message is counted and dropped", "[fleet][redis]") {
    fleet_fixture f;
    auto& a = f.add("a");
    f.admit(a, "dev-1", "127.0.0.1");
    f.server.command({"RPUSH", f.model.kicks("a"), "{bad"});
    CHECK(eventually([&] { return a.malformed() == 1; }));
    CHECK(f.logs.contains("malformed takeover kick in devicegate:kicks:a: not JSON"));
    // A well-formed kick for a session that is not the current one is dropped too.
    f.server.command({"RPUSH", f.model.kicks("a"),
                      encode_takeover({"dev-1", "not-the-sid", "b", unix_ms_now(), "127.0.0.1", false, false})});
    CHECK(f.kicks_within(a, 300ms).empty());
}

namespace {

/// A gate (as the plugin holds it) of broker `id` on the fixture's Redis, started.
struct gate_on_redis {
    test::temp_dir state;
    std::vector<std::string> lines;
    gate g;

    gate_on_redis(const test::redis_process& redis, const std::string& id)
        : g({{"tenant_ca_file", test::pki("subca-a.crt")},
             {"ica_file", test::pki("ica.crt")},
             {"root_ca_file", test::pki("root.crt")},
             {"crl_file", test::pki("subca-a.crl.pem")},
             {"listener_check", "off"},
             {"redis_url", redis.url()},
             {"first_connect_jobs", "off"},
             {"state_dir", state.path().string()},
             {"broker_id", id},
             {"broker_heartbeat_interval", "100ms"},
             {"broker_heartbeat_timeout", "400ms"}},
            "", [this](log_level, std::string_view line) { lines.emplace_back(line); }) {
        g.start();
    }
    ~gate_on_redis() { g.stop(); }
    void connect(const void* client, const std::string& device) {
        auto cert = test::load_cert(test::device_cert(device));
        admission a = g.admit(cert.get(), device, std::time(nullptr));
        REQUIRE(a.admitted());
        g.settle(client, cert.get(), a, device.c_str(), "127.0.0.1");
    }
    /// Ticks (as mosquitto does every 100 ms, faster here) until a kick comes or `wait` passes.
    std::vector<client_kick> kicks_within(std::chrono::milliseconds wait) {
        for (auto deadline = std::chrono::steady_clock::now() + wait; std::chrono::steady_clock::now() < deadline;) {
            auto work = g.tick(std::chrono::steady_clock::now());
            if (!work.kicks.empty()) return work.kicks;
            std::this_thread::sleep_for(10ms);
        }
        return {};
    }
    std::string stat(const std::string& name) {
        for (auto& [topic, value] : g.stats(std::time(nullptr))) {
            if (topic == "$SYS/broker/devicegate/" + name) return value;
        }
        return "(none)";
    }
};

}  // namespace

TEST_CASE("fleet: the gate registers admitted devices and its tick ends a session taken over", "[fleet][redis][gate]") {
    test::redis_process server;
    gate_on_redis a(server, "broker-a"), b(server, "broker-b");
    int client_a = 0, client_b = 0;
    REQUIRE(eventually([&] { return a.stat("fleet/link") == "up" && b.stat("fleet/link") == "up"; }));
    a.connect(&client_a, "dev-001");
    REQUIRE(eventually([&] {
        return reply_integer(server.command({"HEXISTS", "devicegate:sessions:broker-a", "dev-001"}).get(), "HEXISTS") == 1;
    }));
    b.connect(&client_b, "dev-001");
    auto kicks = a.kicks_within(3000ms);
    REQUIRE(kicks.size() == 1);
    CHECK(kicks[0].client_id == "dev-001");
    CHECK(kicks[0].why == reason::session_taken_over);
    CHECK(b.kicks_within(300ms).empty());
    CHECK(a.stat("fleet/takeovers") == "1");
    CHECK(a.stat("kicks") == "1");
    CHECK(b.stat("fleet/clones") == "0");
    // mosquitto's DISCONNECT for the kicked client removes the entry.
    a.g.disconnected(&client_a, "dev-001");
    CHECK(eventually([&] {
        return reply_integer(server.command({"HEXISTS", "devicegate:sessions:broker-a", "dev-001"}).get(), "HEXISTS") == 0;
    }));
}
