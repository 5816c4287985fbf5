// The real broker and the real devicegate-ctl on a Redis Sentinel deployment (master, replica,
// three sentinels: tests/support/redis_sentinel_cluster.hpp): revocations reach the broker
// before and after a SIGKILL failover, ctl says whether a replica confirmed, and a bad
// redis-sentinel:// URL stops the broker.
#include "harness.hpp"
#include "redis_sentinel_cluster.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;

TEST_CASE("a broker on a Sentinel URL follows a SIGKILL failover; revocations through ctl reach it",
          "[integration][redis_sentinel]") {
    devicegate::test::sentinel_cluster cluster;
    broker b({.plugin_opts = {{"redis_url", cluster.url()}}});
    REQUIRE(b.start());
    const auto link_up_at = [](int port) {
        return "devicegate: redis link up (127.0.0.1:" + std::to_string(port) + "/0 (master 'mymaster' from sentinel";
    };
    REQUIRE(b.wait_for_log(link_up_at(cluster.master_port())));
    auto first = device("dev-001");
    auto second = device("dev-002");
    REQUIRE(first->connect(b.port()) == 0);
    REQUIRE(second->connect(b.port()) == 0);

    auto r = ctl({"revoke", "--force", "dev-001"}, cluster.url());
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("revoked device dev-001; 1 broker(s) notified"));
    CHECK_THAT(r.out, Catch::Contains("replicated to 1 replica(s)"));
    CHECK(first->wait_disconnected(2s));

    cluster.kill_master();
    CHECK(b.wait_for_log("devicegate: redis link down (sentinel master 'mymaster' via 127.0.0.1:"));
    const int promoted = cluster.wait_failover();
    // The new master has no replica (the old master is dead): in force, but not safe from
    // another failover, and ctl says so with exit code 5.
    r = ctl({"revoke", "--force", "dev-002"}, cluster.url());
    CHECK(r.exit_code == 5);
    CHECK_THAT(r.out, Catch::Contains("revoked device dev-002"));
    CHECK_THAT(r.out, Catch::Contains("warning: not confirmed by any replica within 1000 ms (the master has no connected "
                                      "replica): a failover now could lose this revocation"));
    // Whether the broker was back in time for the message or not, its resync applies it.
    CHECK(second->wait_disconnected(15s));
    CHECK(b.wait_for_log(link_up_at(promoted), 15s));
    CHECK(b.wait_for_log("devicegate: kick client=dev-002 reason=revoked_denylist"));
    CHECK(device("dev-002")->connect(b.port()) == 135);  // not authorized
}

TEST_CASE("a bad redis-sentinel:// URL stops the broker, naming the expected form but not the password",
          "[integration][redis_sentinel]") {
    broker b({.plugin_opts = {{"redis_url", "redis-sentinel://:Secret1@127.0.0.1:26379"}}});
    CHECK_FALSE(b.start());
    CHECK(b.wait_exit(5s));
    CHECK(b.log_contains("devicegate: refusing to start: plugin_opt_redis_url: missing /master_name; expected "
                         "redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name"));
    CHECK_FALSE(b.log_contains("Secret1"));
}
