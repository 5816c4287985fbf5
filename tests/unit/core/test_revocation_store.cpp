// revocation_store against a real redis-server: what devicegate-ctl writes is what the
// plugin's denylist_sync reads, keys and message format included.
#include "devicegate/revocation_store.hpp"
#include "redis_process.hpp"
#include "redis_sentinel_cluster.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;

TEST_CASE("revocation entries: JSON round trip", "[revocation_store]") {
    auto e = parse_revocation_entry(encode_revocation_entry({"stolen", 1795000000}));
    REQUIRE(e);
    CHECK(e->reason == "stolen");
    CHECK(e->at == 1795000000);
    auto no_time = parse_revocation_entry(encode_revocation_entry({"lost", std::nullopt}));
    REQUIRE(no_time);
    CHECK_FALSE(no_time->at);
    CHECK_FALSE(parse_revocation_entry("not json"));
    CHECK_FALSE(parse_revocation_entry("[1]"));
    CHECK(parse_revocation_entry(R"({"reason":7})")->reason.empty());  // a wrong type is not shown
}

TEST_CASE("revocation_store: revoke and unrevoke write the hash and announce the change", "[revocation_store]") {
    test::redis_process server;
    const redis_model model{"t:"};
    revocation_subscription sub(server.options(), model);
    redis_connection redis(server.options());
    revocation_store store(redis, model);

    CHECK(store.revoke({false, "dev-1"}, {"stolen", 100}) == 1);  // one subscriber: `sub`
    auto message = sub.next_change(std::chrono::milliseconds(1000));
    REQUIRE(message);
    auto change = parse_denylist_change(*message);
    CHECK(change.revoke);
    CHECK_FALSE(change.serial);
    CHECK(change.value == "dev-1");
    // The key and the entry as redis_model documents them.
    auto stored = reply_optional_string(server.command({"HGET", "t:revoked:device", "dev-1"}).get(), "HGET");
    REQUIRE(stored);
    CHECK(parse_revocation_entry(*stored)->reason == "stolen");
    CHECK(store.entry({false, "dev-1"}) == stored);
    CHECK_FALSE(store.entry({false, "dev-2"}));

    CHECK(store.revoke({true, "0A7A"}, {"superseded", 200, "devicegate-bridge"}) == 1);
    REQUIRE(sub.next_change(std::chrono::milliseconds(1000)));
    CHECK(store.entries(true).count("0A7A") == 1);
    CHECK(store.entries(false).count("dev-1") == 1);
    CHECK(parse_revocation_entry(*store.entry({true, "0A7A"}))->by == "devicegate-bridge");
    CHECK(store.denies("dev-1", "FFFF"));
    CHECK(store.denies("dev-9", "0A7A"));
    CHECK_FALSE(store.denies("dev-9", "FFFF"));

    CHECK(store.unrevoke({false, "dev-1"}) == 1);
    auto undo = parse_denylist_change(*sub.next_change(std::chrono::milliseconds(1000)));
    CHECK_FALSE(undo.revoke);
    CHECK(undo.value == "dev-1");
    // Nothing to unrevoke: nothing is published.
    CHECK_FALSE(store.unrevoke({false, "dev-1"}));
    CHECK_FALSE(sub.next_change(std::chrono::milliseconds(50)));
}

TEST_CASE("revocation_store: load reads both hashes, leaving out serials that are not hex", "[revocation_store]") {
    test::redis_process server;
    const redis_model model;
    server.command({"HSET", model.revoked_serials(), "0a:7a", "{}", "not-hex", "{}"});
    server.command({"HSET", model.revoked_devices(), "dev-1", "{}", "dev-2", "{}"});
    redis_connection redis(server.options());
    revocation_store store(redis, model);
    auto snapshot = store.load();
    CHECK(snapshot.list.serials == string_set{"0A7A"});
    CHECK(snapshot.list.devices == string_set{"dev-1", "dev-2"});
    REQUIRE(snapshot.malformed.size() == 1);
    CHECK(snapshot.malformed[0].key == model.revoked_serials());
    CHECK(snapshot.malformed[0].value == "not-hex");

    // A list that is not a hash is bad data, named as such.
    server.command({"DEL", model.revoked_devices()});
    server.command({"SADD", model.revoked_devices(), "dev-1"});
    CHECK_THROWS_WITH(store.load(), Catch::Contains("expected a hash"));
}

TEST_CASE("revocation_subscription: ignores other traffic, fails when Redis goes", "[revocation_store]") {
    test::redis_process server;
    revocation_subscription sub(server.options(), redis_model{});
    CHECK_FALSE(sub.next_change(std::chrono::milliseconds(20)));
    server.kill();
    CHECK_THROWS_AS(
        [&] {
            for (int i = 0; i < 100; ++i) sub.next_change(std::chrono::milliseconds(20));
        }(),
        redis_io_error);
    CHECK_THROWS_AS(revocation_subscription(server.options(), redis_model{}), redis_io_error);
}

TEST_CASE("revocation_store: a single Redis without replicas does not wait", "[revocation_store][replication]") {
    test::redis_process server;
    redis_connection redis(server.options());
    revocation_store store(redis, redis_model{});
    store.revoke({false, "dev-1"}, {"stolen", 100});
    const auto start = std::chrono::steady_clock::now();
    auto r = store.wait_replicated(std::chrono::seconds(5));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
    CHECK(r.replicas == 0);
    CHECK(r.acknowledged == 0);
    CHECK_FALSE(r.expected);
    CHECK(r.safe());
}

TEST_CASE("revocation_store: with Sentinel, a revocation waits for the replica and says when it did not come",
          "[revocation_store][replication][redis_sentinel]") {
    test::sentinel_cluster cluster;
    redis_connection redis(cluster.options());
    revocation_store store(redis, redis_model{});
    store.revoke({false, "dev-1"}, {"stolen", 100});
    auto r = store.wait_replicated(std::chrono::seconds(2));
    CHECK(r.replicas == 1);
    CHECK(r.acknowledged == 1);
    CHECK(r.expected);
    CHECK(r.safe());
    // Confirmed means the replica holds it: it survives a failover.
    CHECK(reply_optional_string(cluster.node_command(cluster.replica_port(), {"HGET", "devicegate:revoked:device", "dev-1"}).get(), "HGET"));

    // A replica that stays connected but answers nothing (stopped): WAIT gives up after the timeout.
    cluster.pause_replica(true);
    store.revoke({false, "dev-2"}, {"stolen", 100});
    const auto start = std::chrono::steady_clock::now();
    r = store.wait_replicated(std::chrono::milliseconds(300));
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(300));
    cluster.pause_replica(false);
    CHECK(r.replicas == 1);
    CHECK(r.acknowledged == 0);
    CHECK_FALSE(r.safe());

    // No replica at all behind a Sentinel URL: no wait, but not safe either.
    cluster.kill_replica();
    REQUIRE(test::eventually([&] { return store.wait_replicated(std::chrono::milliseconds(100)).replicas == 0; }));
    r = store.wait_replicated(std::chrono::seconds(5));
    CHECK(r.expected);
    CHECK(r.acknowledged == 0);
    CHECK_FALSE(r.safe());
}
