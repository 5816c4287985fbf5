// The shipped Redis ACL users (config/redis-users.acl.example) with the real redis-server,
// broker, worker and devicegate-ctl: the normal flow works with each component's own user,
// and each user is refused what it does not need (docs/security.md, Redis ACL users).
#include "harness.hpp"

#include "devicegate/redis.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace devicegate::itest;

namespace {

constexpr int not_authorized = 135;

std::string url_for(const redis_server& redis, const std::string& user) {
    return "redis://devicegate-" + user + ":change-me-" + user + "@127.0.0.1:" + std::to_string(redis.port());
}

/// One command as `user`; the reply's text (errors included).
std::string as_user(const redis_server& redis, const std::string& user, const std::vector<std::string>& argv) {
    auto o = devicegate::redis_options::parse_url(url_for(redis, user));
    devicegate::redis_connection c(o);
    auto reply = c.command(argv);
    if (reply->type == REDIS_REPLY_INTEGER) return std::to_string(reply->integer);
    if (reply->str == nullptr) return "(" + std::string(devicegate::reply_type_name(reply.get())) + ")";
    return std::string(reply->str, reply->len);
}

/// redis-server on `shell`'s port with the shipped ACL file. The only change: the default user,
/// which the file turns off, is this test's administrator (the harness's own commands).
std::unique_ptr<process> start_with_acl(const redis_server& shell) {
    std::ifstream in(std::string(DEVICEGATE_SOURCE_DIR) + "/config/redis-users.acl.example");
    std::stringstream text;
    text << in.rdbuf();
    std::string acl = text.str();
    const std::string off = "user default off\n";
    REQUIRE(acl.find(off) != std::string::npos);
    acl.replace(acl.find(off), off.size(), "user default on nopass ~* &* +@all\n");
    write_text(shell.dir() / "users.acl", acl);
    auto p = std::make_unique<process>(
        std::vector<std::string>{"redis-server", "--port", std::to_string(shell.port()), "--bind", "127.0.0.1", "--dir",
                                 shell.dir().string(), "--save", "", "--appendonly", "no", "--aclfile",
                                 (shell.dir() / "users.acl").string()},
        shell.dir() / "redis.log");
    REQUIRE(eventually([&] {
        try {
            return shell.command({"PING"}) == "PONG";
        } catch (const std::exception&) {
            return false;
        }
    }));
    return p;
}

}  // namespace

TEST_CASE("with the shipped Redis ACL users the broker, worker and ctl work, and each is refused what it does not need",
          "[integration][redis][acl][integrity]") {
    redis_server redis;  // not started: its port and directory host the ACL'd redis-server
    auto server = start_with_acl(redis);
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes, {.extra = {{"redis_url", url_for(redis, "worker")}}});
    REQUIRE(worker.start());
    auto state = test_dir();
    broker b({.plugin_opts = {{"redis_url", url_for(redis, "plugin")}, {"state_dir", state.string()}, {"broker_id", "acl-b1"}}});
    REQUIRE(b.start());
    REQUIRE(b.wait_for_log("redis link up"));

    // First connect -> job (plugin user) -> registration (worker user) -> status (ctl user).
    auto dev = device("dev-001");
    REQUIRE(dev->connect(b.port()) == 0);
    REQUIRE(eventually([&] { return fakes.thingsboard_device("dev-001").is_object(); }, 10s));
    CHECK(eventually([&] { return redis.integer({"HLEN", "devicegate:sessions:acl-b1"}) == 1; }));
    REQUIRE(eventually([&] {
        return ctl({"status", "dev-001"}, url_for(redis, "ctl")).out.find("hawkbit:      registered") != std::string::npos;
    }));
    // Revocation (ctl user) reaches the broker (plugin user's subscription) at once.
    auto revoke = ctl({"revoke", "dev-001", "--reason", "acl test"}, url_for(redis, "ctl"));
    CHECK(revoke.exit_code == 0);
    CHECK(dev->wait_disconnected(3s));
    // The fleet registry removes the ended session (HDEL) with the plugin user.
    CHECK(eventually([&] { return redis.integer({"HLEN", "devicegate:sessions:acl-b1"}) == 0; }));
    CHECK(device("dev-001")->connect(b.port()) == not_authorized);
    CHECK(ctl({"dlq", "list"}, url_for(redis, "ctl")).exit_code == 0);
    // The worker's heartbeat (worker user), read by ctl workers (ctl user).
    REQUIRE(eventually([&] { return ctl({"workers"}, url_for(redis, "ctl")).exit_code == 0; }));
    // A wrong password is a Redis that cannot be used (exit 2), not unexpected data (4).
    auto wrong = ctl({"dlq", "list"}, "redis://devicegate-ctl:wrong-Secret@127.0.0.1:" + std::to_string(redis.port()));
    CHECK(wrong.exit_code == 2);
    CHECK(wrong.out.find("AUTH refused (check the user and password in the URL)") != std::string::npos);
    CHECK(wrong.out.find("wrong-Secret") == std::string::npos);
    // reregister writes the device hash (forgets the targets' ids) and enqueues a job.
    auto again = ctl({"reregister", "dev-001"}, url_for(redis, "ctl"));
    CHECK(again.exit_code == 0);
    CHECK(again.out.find("NOPERM") == std::string::npos);
    CHECK(ctl({"list-revoked"}, url_for(redis, "ctl")).exit_code == 0);
    CHECK(b.log().find("NOPERM") == std::string::npos);
    CHECK(worker.log().find("NOPERM") == std::string::npos);

    // What each user must not do.
    CHECK_THAT(as_user(redis, "plugin", {"HSET", "devicegate:revoked:device", "dev-002", "{}"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "plugin", {"HDEL", "devicegate:revoked:device", "dev-001"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "plugin", {"PUBLISH", "devicegate:revocations", "{}"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "plugin", {"XDEL", "devicegate:jobs", "0-1"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "worker", {"HDEL", "devicegate:revoked:device", "dev-001"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "worker", {"HKEYS", "devicegate:revoked:device"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "ctl", {"HSET", "devicegate:jobs:marker", "x", "x"}), Catch::StartsWith("NOPERM"));
    CHECK_THAT(as_user(redis, "ctl", {"HSET", "devicegate:sessions:b1", "dev-001", "{}"}), Catch::StartsWith("NOPERM"));
    for (const char* user : {"plugin", "worker", "ctl"}) {
        INFO(user);
        CHECK_THAT(as_user(redis, user, {"FLUSHALL"}), Catch::StartsWith("NOPERM"));
        CHECK_THAT(as_user(redis, user, {"CONFIG", "SET", "maxmemory", "1"}), Catch::StartsWith("NOPERM"));
        CHECK_THAT(as_user(redis, user, {"SET", "elsewhere", "x"}), Catch::StartsWith("NOPERM"));
    }
    CHECK(redis.integer({"HEXISTS", "devicegate:revoked:device", "dev-001"}) == 1);  // nothing undid the revocation
    CHECK(as_user(redis, "ctl", {"PING"}) == "PONG");
}
