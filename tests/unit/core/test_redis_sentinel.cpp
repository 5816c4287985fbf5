// redis-sentinel:// URLs and master discovery against real sentinels (tests/support/
// redis_sentinel_cluster.hpp: a master, a replica and three sentinels on loopback), a fake
// sentinel that names a replica, and a real failover.
#include "ctl.hpp"
#include "devicegate/redis.hpp"
#include "redis_process.hpp"
#include "redis_sentinel_cluster.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <sstream>
#include <catch2/catch.hpp>
#include <thread>

using namespace devicegate;

namespace {

std::string invalid_url(const std::string& url) {
    try {
        redis_options::parse_url(url);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "(accepted)";
}

bool ipv6_loopback() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
}

std::string io_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const redis_io_error& e) {
        return e.what();
    }
    return "(no redis_io_error)";
}

/// A "sentinel" on a loopback port that answers every request with one fixed RESP reply
/// (enough for one SENTINEL get-master-addr-by-name per connection).
class fake_sentinel {
public:
    explicit fake_sentinel(std::string reply) : reply_(std::move(reply)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 8) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            throw std::runtime_error("fake_sentinel: cannot listen");
        }
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~fake_sentinel() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    int port() const { return port_; }
    int requests() const { return requests_; }
    /// "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n": the master is at 127.0.0.1:port.
    static std::string address_reply(int port) {
        const std::string p = std::to_string(port);
        return "*2\r\n$9\r\n127.0.0.1\r\n$" + std::to_string(p.size()) + "\r\n" + p + "\r\n";
    }

private:
    void serve() {
        while (!stop_) {
            pollfd pfd{fd_, POLLIN, 0};
            if (::poll(&pfd, 1, 20) <= 0) continue;
            const int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            char buf[512];
            pollfd cfd{c, POLLIN, 0};
            if (::poll(&cfd, 1, 1000) > 0 && ::read(c, buf, sizeof buf) > 0) {
                ++requests_;
                (void)!::write(c, reply_.data(), reply_.size());
            }
            ::close(c);
        }
    }

    std::string reply_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> requests_{0};
    std::thread thread_;
};

}  // namespace

TEST_CASE("redis-sentinel URLs: sentinels, master name, db and credentials", "[redis_sentinel]") {
    auto o = redis_options::parse_url(
        "redis-sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b,10.0.0.3:5000/my%2Fmaster/3"
        "?sentinel_user=watch&sentinel_password=p%26w");
    CHECK(o.via_sentinel());
    REQUIRE(o.sentinels.size() == 3);
    CHECK(o.sentinels[0] == redis_endpoint{"10.0.0.1", 26380});
    CHECK(o.sentinels[1] == redis_endpoint{"sentinel-b", 26379});  // the default sentinel port
    CHECK(o.sentinels[2] == redis_endpoint{"10.0.0.3", 5000});
    CHECK(o.master_name == "my/master");
    CHECK(o.db == 3);
    CHECK(o.username == "app");
    CHECK(o.password == "s@cret");
    CHECK(o.sentinel_username == "watch");
    CHECK(o.sentinel_password == "p&w");
    CHECK(o.describe() == "sentinel master 'my/master' via 10.0.0.1:26380,sentinel-b:26379,10.0.0.3:5000 db 3");

    auto plain = redis_options::parse_url("redis-sentinel://127.0.0.1/mymaster");
    CHECK(plain.sentinels == std::vector<redis_endpoint>{{"127.0.0.1", 26379}});
    CHECK(plain.db == 0);
    CHECK(plain.password.empty());
    CHECK(plain.sentinel_password.empty());
    CHECK(redis_options::parse_url("redis-sentinel://:pw@h:1/m/").password == "pw");  // default user
    CHECK(redis_options::parse_url("redis-sentinel://h/m?sentinel_password=x").sentinel_username.empty());

    // Plain redis:// URLs are what they were.
    auto direct = redis_options::parse_url("redis://u:p@host:6390/2");
    CHECK_FALSE(direct.via_sentinel());
    CHECK(direct.describe() == "host:6390/2");
}

TEST_CASE("redis and redis-sentinel URLs: IPv6 addresses in brackets", "[redis_sentinel]") {
    auto direct = redis_options::parse_url("redis://:pw@[::1]:6390/2");
    CHECK(direct.host == "::1");
    CHECK(direct.port == 6390);
    CHECK(direct.db == 2);
    CHECK(direct.describe() == "[::1]:6390/2");
    auto no_port = redis_options::parse_url("redis://[fd00::5]");
    CHECK(no_port.host == "fd00::5");
    CHECK(no_port.port == 6379);

    auto o = redis_options::parse_url("redis-sentinel://[::1]:26380,[fd00::2],10.0.0.3:5000/mymaster");
    REQUIRE(o.sentinels.size() == 3);
    CHECK(o.sentinels[0] == redis_endpoint{"::1", 26380});
    CHECK(o.sentinels[1] == redis_endpoint{"fd00::2", 26379});
    CHECK(o.sentinels[2] == redis_endpoint{"10.0.0.3", 5000});
    CHECK(o.describe() == "sentinel master 'mymaster' via [::1]:26380,[fd00::2]:26379,10.0.0.3:5000 db 0");

    // A real connection to a redis-server listening on the IPv6 loopback only.
    if (ipv6_loopback()) {
        test::redis_process v6("::1");
        CHECK(v6.url() == "redis://[::1]:" + std::to_string(v6.port()));
        redis_connection c(redis_options::parse_url(v6.url()));
        CHECK(reply_string(c.command({"PING"}).get(), "PING") == "PONG");
    } else {
        WARN("no IPv6 loopback on this machine: the connection over [::1] was not tried");
    }

    // Without brackets an IPv6 address is ambiguous (is the last group a port?): refused.
    CHECK_THAT(invalid_url("redis://::1:6379"), Catch::Contains("an IPv6 address needs brackets: [::1:6379]"));
    CHECK_THAT(invalid_url("redis-sentinel://fd00::2/m"), Catch::Contains("an IPv6 address needs brackets"));
    for (const std::string bad : {"redis://[::1", "redis://[]:6379", "redis://[host]:6379", "redis://[::1]x",
                                  "redis://[::1]:", "redis-sentinel://[::1]:0/m"}) {
        INFO(bad);
        CHECK_THAT(invalid_url(bad), Catch::Contains("expected redis"));
    }
}

TEST_CASE("redis-sentinel URLs: refusals name the expected form, never the password", "[redis_sentinel]") {
    const std::string form = "redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]";
    for (const std::string bad : {"redis-sentinel://h1:26379", "redis-sentinel:///m", "redis-sentinel://h1,,h2/m",
                                  "redis-sentinel://h:0/m", "redis-sentinel://h:x/m", "redis-sentinel://h/",
                                  "redis-sentinel://h//2", "redis-sentinel://h/m/-1", "redis-sentinel://h/m?db=2",
                                  "redis-sentinel://h/m?sentinel_user=u", "redis-sentinel://:a%zz@h/m"}) {
        INFO(bad);
        CHECK_THAT(invalid_url(bad), Catch::Contains(form));
    }
    CHECK_THAT(invalid_url("redis-sentinel://h1:26379"), Catch::StartsWith("missing /master_name"));
    CHECK_THAT(invalid_url("redis-sentinel://h:x/m"), Catch::StartsWith("bad port \"x\""));
    CHECK_THAT(invalid_url("redis-sentinel://h/m?db=2"), Catch::StartsWith("unknown parameter (only sentinel_user"));
    CHECK_THAT(invalid_url("redis-sentinel://h/m?sentinel_password=a&sentinel_password=b"),
               Catch::StartsWith("sentinel_password given twice"));
    // Secrets are not repeated, whatever is wrong with the URL.
    for (const std::string bad : {"redis-sentinel://u:Secret1@h:x/m", "redis-sentinel://u:Secret1%z@h/m",
                                  "redis-sentinel://h/m?sentinel_password=Sec&Secret1",
                                  "redis-sentinel://h/m?sentinel_password=Secret1%"}) {
        INFO(bad);
        CHECK_THAT(invalid_url(bad), !Catch::Contains("Secret1"));
    }
    CHECK_THAT(invalid_url("rediss://h/m"), Catch::StartsWith("not a redis:// URL or a redis-sentinel:// URL"));
    // describe() shows no password either.
    auto o = redis_options::parse_url("redis-sentinel://u:Secret1@h/m?sentinel_password=Secret2");
    CHECK_THAT(o.describe(), !Catch::Contains("Secret"));
}

TEST_CASE("sentinel discovery: the master from the first sentinel that knows it", "[redis_sentinel]") {
    test::sentinel_cluster cluster;
    redis_connection c(cluster.options());
    CHECK(c.via_sentinel());
    CHECK(c.address() == redis_endpoint{"127.0.0.1", cluster.master_port()});
    CHECK_THAT(c.describe(), Catch::Contains("(master 'mymaster' from sentinel 127.0.0.1:" +
                                             std::to_string(cluster.sentinel_ports()[0]) + ")"));
    CHECK(c.expect_master() == 1);  // the replica
    expect_ok(c.command({"SET", "k", "v"}).get(), "SET");
    CHECK(reply_string(cluster.node_command(cluster.master_port(), {"GET", "k"}).get(), "GET") == "v");

    // A dead sentinel first and one that does not know the name: the next one answers.
    auto o = cluster.options();
    o.sentinels.insert(o.sentinels.begin(), {"127.0.0.1", test::redis_process::unused_port()});
    CHECK(redis_connection(o).address().port == cluster.master_port());

    // Nobody knows the master: every sentinel's answer is named.
    auto unknown = cluster.options();
    unknown.master_name = "nosuchmaster";
    unknown.sentinels.resize(2);
    const std::string s0 = std::to_string(cluster.sentinel_ports()[0]), s1 = std::to_string(cluster.sentinel_ports()[1]);
    CHECK(io_error_of([&] { redis_connection{unknown}; }) ==
          "no usable master 'nosuchmaster' from the sentinels: sentinel 127.0.0.1:" + s0 +
              ": master 'nosuchmaster' unknown; sentinel 127.0.0.1:" + s1 + ": master 'nosuchmaster' unknown");

    // The db of the URL is selected on the master.
    redis_connection db2(cluster.options(2));
    expect_ok(db2.command({"SET", "in-db-2", "x"}).get(), "SET");
    redis_options direct = cluster.node_options(cluster.master_port());
    direct.db = 2;
    CHECK(reply_string(redis_connection(direct).command({"GET", "in-db-2"}).get(), "GET") == "x");
}

TEST_CASE("sentinel discovery: a node that is not the master is refused, never written to", "[redis_sentinel]") {
    test::redis_process master, replica;
    expect_ok(replica.command({"REPLICAOF", "127.0.0.1", std::to_string(master.port())}).get(), "REPLICAOF");
    fake_sentinel liar(fake_sentinel::address_reply(replica.port()));
    fake_sentinel truthful(fake_sentinel::address_reply(master.port()));

    auto o = redis_options::parse_url("redis-sentinel://127.0.0.1:" + std::to_string(liar.port()) + "/mymaster");
    o.sentinel_timeout = std::chrono::milliseconds(300);
    const std::string replica_at = "127.0.0.1:" + std::to_string(replica.port());
    CHECK(io_error_of([&] { redis_connection{o}; }) == "no usable master 'mymaster' from the sentinels: " + replica_at +
                                                           " reports role slave");
    CHECK(liar.requests() == 1);

    // With a second sentinel that names the real master, that one is used.
    o.sentinels.push_back({"127.0.0.1", truthful.port()});
    redis_connection c(o);
    CHECK(c.address().port == master.port());

    // A sentinel that answers garbage is skipped, and named.
    fake_sentinel broken("-ERR unknown command 'SENTINEL'\r\n");
    o.sentinels = {{"127.0.0.1", broken.port()}};
    CHECK_THAT(io_error_of([&] { redis_connection{o}; }),
               Catch::Contains("sentinel 127.0.0.1:" + std::to_string(broken.port()) +
                               ": SENTINEL get-master-addr-by-name: Redis error: ERR unknown command"));
}

TEST_CASE("redis: READONLY, LOADING and MASTERDOWN replies are link errors (the caller reconnects)", "[redis_sentinel]") {
    test::redis_process master, replica;
    expect_ok(replica.command({"REPLICAOF", "127.0.0.1", std::to_string(master.port())}).get(), "REPLICAOF");
    redis_connection c(replica.options());  // a plain URL: no ROLE check, the write tells
    CHECK_THAT(io_error_of([&] { c.command({"SET", "k", "v"}); }), Catch::Contains("READONLY"));
    CHECK_THAT(io_error_of([&] { c.pipeline({{"GET", "k"}, {"SET", "k", "v"}}); }), Catch::Contains("READONLY"));
    CHECK_THAT(io_error_of([&] { c.transaction({{"SET", "k", "v"}}); }), Catch::Contains("READONLY"));
    CHECK_NOTHROW(c.command({"GET", "k"}));  // reads are fine
    CHECK_THAT(io_error_of([&] { c.expect_master(); }), Catch::EndsWith("reports role slave"));
    // A replica that lost its master and serves no stale data answers MASTERDOWN.
    expect_ok(replica.command({"CONFIG", "SET", "replica-serve-stale-data", "no"}).get(), "CONFIG SET");
    master.kill();
    CHECK(test::eventually([&] {
        try {
            c.command({"GET", "k"});
            return false;
        } catch (const redis_io_error& e) {
            return std::string(e.what()).find("MASTERDOWN") != std::string::npos;
        }
    }));
    // Other error replies stay replies (bad data, not a link problem).
    redis_connection m(replica.options());
    CHECK(is_error_code(m.command({"NOSUCHCOMMAND"}).get(), "ERR"));
}

TEST_CASE("sentinel discovery: AUTH to the sentinels and to the data nodes (passwords and ACL users)", "[redis_sentinel]") {
    test::sentinel_cluster cluster({.password = "data-Secret", .sentinel_password = "sentinel-Secret"});
    redis_connection c(cluster.options());
    CHECK(c.address().port == cluster.master_port());
    expect_ok(c.command({"SET", "k", "v"}).get(), "SET");

    auto no_sentinel_auth = cluster.options();
    no_sentinel_auth.sentinel_password.clear();
    const std::string refused = io_error_of([&] { redis_connection{no_sentinel_auth}; });
    CHECK_THAT(refused, Catch::Contains("NOAUTH"));
    auto wrong_data_auth = cluster.options();
    wrong_data_auth.password = "wrong-Secret";
    const std::string wrong = io_error_of([&] { redis_connection{wrong_data_auth}; });
    CHECK_THAT(wrong, Catch::Contains("127.0.0.1:" + std::to_string(cluster.master_port()) + "/0: AUTH refused"));
    for (const auto& text : {refused, wrong}) CHECK_THAT(text, !Catch::Contains("Secret"));

    // ACL users, on the data nodes (ACLs are not replicated: both get it) and on the sentinels.
    for (int port : {cluster.master_port(), cluster.replica_port()}) {
        expect_ok(cluster.node_command(port, {"ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all"}).get(), "ACL");
    }
    for (int port : cluster.sentinel_ports()) {
        redis_options o;
        o.port = port;
        o.password = "sentinel-Secret";
        expect_ok(redis_connection(o).command({"ACL", "SETUSER", "watcher", "on", ">watch-pw", "+@all"}).get(), "ACL");
    }
    std::string url = cluster.url();
    url.replace(url.find(":data-Secret@"), std::string(":data-Secret@").size(), "app:app-pw@");
    url.replace(url.find("sentinel_password=sentinel-Secret"), std::string("sentinel_password=sentinel-Secret").size(),
                "sentinel_user=watcher&sentinel_password=watch-pw");
    redis_connection acl(redis_options::parse_url(url));
    CHECK(reply_string(acl.command({"ACL", "WHOAMI"}).get(), "WHOAMI") == "app");
}

TEST_CASE("devicegate-ctl revoke through Sentinel: says how many replicas confirmed, exit 5 when none did",
          "[redis_sentinel][ctl]") {
    test::sentinel_cluster cluster;
    auto revoke = [&](const std::string& device, std::string& out) {
        std::ostringstream o, e;
        const int code = ctl::run({"revoke", "--force", device}, o, e, cluster.url(), "");
        out = o.str() + e.str();
        return code;
    };
    std::string out;
    CHECK(revoke("dev-1", out) == ctl::ok);
    CHECK_THAT(out, Catch::Contains("revoked device dev-1; 0 broker(s) notified"));
    CHECK_THAT(out, Catch::Contains("replicated to 1 replica(s)\n"));

    cluster.pause_replica(true);
    CHECK(revoke("dev-2", out) == ctl::unreplicated);
    cluster.pause_replica(false);
    CHECK_THAT(out, Catch::Contains("revoked device dev-2"));
    CHECK_THAT(out, Catch::Contains("warning: not confirmed by any replica within 1000 ms (1 connected replica(s) did "
                                    "not answer): a failover now could lose this revocation; re-run revoke after the "
                                    "failover"));

    // A single Redis without replicas: as before, no replication line, exit 0.
    test::redis_process single;
    std::ostringstream o, e;
    CHECK(ctl::run({"revoke", "--force", "dev-3"}, o, e, single.url(), "") == ctl::ok);
    CHECK_THAT(o.str(), !Catch::Contains("replica"));
}
