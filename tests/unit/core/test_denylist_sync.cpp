// denylist_sync against a real redis-server: the local copy follows revocations written by
// revocation_store (devicegate-ctl's writer), asks the broker thread to kick what is newly
// revoked, survives malformed data and a Redis crash, and keeps a cache file.
#include "devicegate/denylist_sync.hpp"
#include "devicegate/revocation_store.hpp"
#include "log_capture.hpp"
#include "redis_process.hpp"
#include "redis_sentinel_cluster.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>


using namespace devicegate;
using test::eventually;

namespace {

struct fixture {
    test::redis_process server;
    test::temp_dir dir;
    denylist_state state;
    broker_queue queue;
    test::log_capture logs;
    std::vector<kick_request> kicks;

    denylist_sync::options options(std::chrono::milliseconds resync = std::chrono::seconds(60)) {
        return {server.options(), redis_model{}, resync, dir.file("denylist.json")};
    }
    logger log() { return logs.sink(); }
    bool logged(const std::string& needle) const { return logs.contains(needle); }
    /// Kicks drained so far (as the broker thread's TICK would).
    const std::vector<kick_request>& drained_kicks() {
        for (auto& k : queue.drain().kicks) kicks.push_back(std::move(k));
        return kicks;
    }
    bool kicked_device(const std::string& id) {
        for (const auto& k : drained_kicks()) {
            if (std::find(k.device_ids.begin(), k.device_ids.end(), id) != k.device_ids.end()) return true;
        }
        return false;
    }
    bool listed_device(const std::string& id) { return state.list.load()->devices.count(id) > 0; }
    /// Writes as devicegate-ctl does.
    long long revoke(const revocation_target& t) {
        redis_connection redis(server.options());
        return revocation_store(redis, redis_model{}).revoke(t, {"test", 1});
    }
};

}  // namespace

TEST_CASE("denylist_sync: full load at start, then each change within moments", "[denylist_sync]") {
    fixture f;
    f.server.command({"HSET", "devicegate:revoked:device", "dev-old", "{}"});
    denylist_sync sync(f.options(), f.state, f.queue, f.log());
    CHECK(f.state.stale_since != 0);  // nothing synced yet
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    CHECK(f.state.stale_since == 0);
    CHECK(f.listed_device("dev-old"));
    CHECK(f.kicked_device("dev-old"));

    // The subscription is confirmed before the load: a revocation right away is not missed.
    CHECK(f.revoke({false, "dev-new"}) == 1);
    REQUIRE(eventually([&] { return f.listed_device("dev-new"); }, std::chrono::milliseconds(2000)));
    CHECK(f.kicked_device("dev-new"));
    f.revoke({true, "0a:7a"});
    REQUIRE(eventually([&] { return f.state.list.load()->serials.count("0A7A") > 0; }));
    bool serial_kick = false;
    for (const auto& k : f.drained_kicks()) serial_kick = serial_kick || !k.serials.empty();
    CHECK(serial_kick);

    redis_connection redis(f.server.options());
    REQUIRE(revocation_store(redis, redis_model{}).unrevoke({false, "dev-new"}));
    REQUIRE(eventually([&] { return !f.listed_device("dev-new"); }));

    // The cache file holds what was synced last (written after the in-memory copy is published).
    std::int64_t synced_at = 0;
    denylist cached;
    CHECK(eventually([&] {
        cached = load_denylist_file(f.dir.file("denylist.json"), synced_at);
        return cached.devices == string_set{"dev-old"};
    }));
    CHECK(cached.serials == string_set{"0A7A"});
    CHECK(synced_at > 0);
    sync.stop();
}

TEST_CASE("denylist_sync: malformed data is counted, logged and answered with a resync", "[denylist_sync]") {
    fixture f;
    f.server.command({"HSET", "devicegate:revoked:serial", "not-hex", "{}"});
    denylist_sync sync(f.options(), f.state, f.queue, f.log());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    CHECK(sync.malformed_entries() == 1);
    CHECK(f.logged("malformed deny-list entry in devicegate:revoked:serial: \"not-hex\""));

    // A revocation written without its message is picked up by the resync a bad message causes.
    f.server.command({"HSET", "devicegate:revoked:device", "dev-quiet", "{}"});
    f.server.command({"PUBLISH", "devicegate:revocations", "{\"op\":\"explode\",\"kind\":\"device\",\"value\":\"x\"}"});
    REQUIRE(eventually([&] { return f.listed_device("dev-quiet"); }));
    CHECK(sync.malformed_entries() == 3);  // the entry at start, the message, the entry again
    CHECK(f.logged("malformed message on devicegate:revocations: op must be revoke or unrevoke; resyncing"));
    sync.stop();
}

TEST_CASE("denylist_sync: a Redis crash marks the copy stale; the restart resyncs it", "[denylist_sync]") {
    fixture f;
    denylist_sync sync(f.options(), f.state, f.queue, f.log());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    f.server.kill();
    REQUIRE(eventually([&] { return !sync.link_up(); }));
    CHECK(f.state.stale_since != 0);
    CHECK(sync.link_downs() == 1);
    CHECK(f.logged("redis link down"));

    f.server.start();  // same port, empty: the revocation made "while down" is written now
    f.server.command({"HSET", "devicegate:revoked:device", "dev-while-down", "{}"});
    REQUIRE(eventually([&] { return sync.link_up() && f.listed_device("dev-while-down"); }, std::chrono::seconds(10)));
    CHECK(f.state.stale_since == 0);
    CHECK(sync.link_downs() == 1);
    sync.stop();
}

TEST_CASE("denylist_sync: a hung Redis is noticed within seconds, not at the next resync", "[denylist_sync]") {
    fixture f;
    auto o = f.options();  // resync every 60 s: the periodic resync is not what notices it
    o.redis.connect_timeout = o.redis.command_timeout = std::chrono::milliseconds(500);
    denylist_sync sync(o, f.state, f.queue, f.log());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    f.server.freeze(true);  // connections stay open, nothing answers
    const auto frozen_at = std::chrono::steady_clock::now();
    CHECK(eventually([&] { return !sync.link_up(); }, std::chrono::seconds(5)));
    CHECK(std::chrono::steady_clock::now() - frozen_at < std::chrono::seconds(5));
    CHECK(f.state.stale_since != 0);
    CHECK(f.logged("no answer within 500 ms (timed out"));
    f.server.freeze(false);
    CHECK(eventually([&] { return sync.link_up(); }, std::chrono::seconds(10)));
    sync.stop();
}

TEST_CASE("denylist_sync: the cache file serves a start without Redis", "[denylist_sync]") {
    fixture f;
    denylist cached;
    cached.devices.insert("dev-cached");
    save_denylist_file(f.dir.file("denylist.json"), cached, 1234);
    auto options = f.options();
    f.server.kill();
    denylist_sync sync(options, f.state, f.queue, f.log());
    sync.load_cache();
    CHECK(f.listed_device("dev-cached"));
    CHECK(f.state.synced_at == 1234);
    sync.start();
    REQUIRE(eventually([&] { return f.logged("redis link down"); }));
    CHECK_FALSE(sync.link_up());
    CHECK(f.state.stale_since != 0);
    CHECK(f.listed_device("dev-cached"));  // still served
    sync.stop();
}

TEST_CASE("denylist_sync: periodic resync picks up what no message announced", "[denylist_sync]") {
    fixture f;
    denylist_sync sync(f.options(std::chrono::milliseconds(100)), f.state, f.queue, f.log());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    f.server.command({"HSET", "devicegate:revoked:device", "dev-silent", "{}"});
    REQUIRE(eventually([&] { return f.listed_device("dev-silent"); }, std::chrono::milliseconds(2000)));
    sync.stop();
}

namespace {

/// denylist_sync on a Sentinel deployment (master + replica + 3 sentinels).
struct sentinel_fixture {
    test::sentinel_cluster cluster;
    denylist_state state;
    broker_queue queue;
    test::log_capture logs;

    denylist_sync::options options(std::chrono::milliseconds role_check = std::chrono::milliseconds(200),
                                   bool watch_sentinels = true) {
        denylist_sync::options o{cluster.options(), redis_model{}, std::chrono::seconds(60), ""};
        o.role_check_interval = role_check;
        o.watch_sentinels = watch_sentinels;
        return o;
    }
    bool listed_device(const std::string& id) { return state.list.load()->devices.count(id) > 0; }
    /// Writes as devicegate-ctl does, through the sentinels; returns the subscribers reached.
    long long revoke(const std::string& device) {
        redis_connection redis(cluster.options());
        return revocation_store(redis, redis_model{}).revoke({false, device}, {"test", 1});
    }
    std::string link_up_at(int port) const {
        return "redis link up (127.0.0.1:" + std::to_string(port) + "/0 (master 'mymaster' from sentinel";
    }
};

}  // namespace

TEST_CASE("denylist_sync with Sentinel: a SIGKILLed master; the resync after rediscovery closes the gap",
          "[denylist_sync][redis_sentinel][failover]") {
    sentinel_fixture f;
    denylist_sync sync(f.options(), f.state, f.queue, f.logs.sink());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    CHECK(f.logs.contains(f.link_up_at(f.cluster.master_port())));
    {
        // Confirmed by the replica before the crash: it survives the failover.
        redis_connection redis(f.cluster.options());
        revocation_store store(redis, redis_model{});
        CHECK(store.revoke({false, "dev-before"}, {"test", 1}) == 1);
        CHECK(store.wait_replicated(std::chrono::seconds(2)).acknowledged == 1);
    }
    REQUIRE(eventually([&] { return f.listed_device("dev-before"); }));

    const auto killed_at = std::chrono::steady_clock::now();
    f.cluster.kill_master();
    REQUIRE(eventually([&] { return !sync.link_up(); }));
    const int promoted = f.cluster.wait_failover();
    const auto failed_over_at = std::chrono::steady_clock::now();
    // Right after the failover: the subscriber is most likely still backing off, so the
    // message is lost for it (Redis pub/sub keeps nothing); its resync must pick it up.
    const long long reached = f.revoke("dev-during");
    INFO("subscribers reached by the revocation made right after the failover: " << reached);
    REQUIRE(eventually([&] { return sync.link_up() && f.listed_device("dev-during"); }, std::chrono::seconds(15)));
    const auto ms = [&](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
    WARN("SIGKILL -> sentinels agree on the new master: " << ms(failed_over_at - killed_at)
                                                          << " ms; -> deny-list resynced there: "
                                                          << ms(std::chrono::steady_clock::now() - killed_at) << " ms");
    CHECK(f.listed_device("dev-before"));
    CHECK(f.logs.contains(f.link_up_at(promoted)));
    CHECK(f.logs.contains("redis link down (sentinel master 'mymaster' via 127.0.0.1:"));
    CHECK(sync.link_downs() == 1);

    // And messages flow again.
    CHECK(f.revoke("dev-after") == 1);
    CHECK(eventually([&] { return f.listed_device("dev-after"); }, std::chrono::seconds(2)));
    sync.stop();
}

TEST_CASE("denylist_sync with Sentinel: a demoted master (SENTINEL FAILOVER) is noticed by ROLE and left",
          "[denylist_sync][redis_sentinel][failover]") {
    sentinel_fixture f;
    // Without the +switch-master watch: only the ROLE check can notice.
    denylist_sync sync(f.options(std::chrono::milliseconds(200), false), f.state, f.queue, f.logs.sink());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    const int old_master = f.cluster.master_port();
    redis_connection old(f.cluster.options());
    REQUIRE(old.address().port == old_master);

    f.cluster.failover();
    const int promoted = f.cluster.wait_failover();
    // Sentinel turns a returning old master into a replica only after seconds; do it now.
    expect_ok(f.cluster.node_command(old_master, {"REPLICAOF", "127.0.0.1", std::to_string(promoted)}).get(), "REPLICAOF");
    f.cluster.wait_demoted();

    // A connection that stayed on the old master: its writes are refused as link errors.
    CHECK_THROWS_WITH(old.command({"SET", "k", "v"}), Catch::Contains("READONLY"));
    // The subscriber, still connected to the old master, notices its role and moves.
    REQUIRE(eventually([&] { return f.logs.contains(f.link_up_at(promoted)); }, std::chrono::seconds(10)));
    CHECK(f.logs.contains("127.0.0.1:" + std::to_string(old_master) + " reports role slave"));
    CHECK(sync.link_downs() == 1);
    CHECK(f.revoke("dev-new") == 1);  // the subscriber is on the new master
    CHECK(eventually([&] { return f.listed_device("dev-new"); }, std::chrono::seconds(2)));
    sync.stop();
}

TEST_CASE("denylist_sync with Sentinel: +switch-master moves the subscriber while the old master still says master",
          "[denylist_sync][redis_sentinel][failover]") {
    sentinel_fixture f;
    // No ROLE check in this test's time: only the sentinels' announcement can move it.
    denylist_sync sync(f.options(std::chrono::hours(1)), f.state, f.queue, f.logs.sink());
    sync.start();
    REQUIRE(eventually([&] { return sync.link_up(); }));
    const int old_master = f.cluster.master_port();
    f.cluster.failover();
    const int promoted = f.cluster.wait_failover();
    REQUIRE(eventually([&] { return f.logs.contains(f.link_up_at(promoted)); }, std::chrono::seconds(10)));
    CHECK(f.logs.contains("a sentinel announced +switch-master to 127.0.0.1:" + std::to_string(promoted)));
    CHECK(sync.link_downs() == 1);
    CHECK(f.cluster.role_of(old_master) != "");  // it was not killed: the announcement moved the sync
    CHECK(f.revoke("dev-new") == 1);
    CHECK(eventually([&] { return f.listed_device("dev-new"); }, std::chrono::seconds(2)));
    sync.stop();
}
