// Issue 16: the multi-broker reference deployment on one machine. Three mosquitto brokers with
// the plugin behind haproxy (docker/haproxy.cfg itself, on loopback ports), Redis master +
// replica + three Sentinels (tests/support/redis_sentinel_cluster.hpp), two workers against the
// fakes, all on the Sentinel URL. Runs as its own CTest label (multibroker): 10-20 s on the
// shared 2-core machine (load average 8-14).
#include "harness.hpp"
#include "redis_sentinel_cluster.hpp"
#include "storm_client.hpp"
#include "stream_support.hpp"

#include "devicegate/redis.hpp"

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

using namespace devicegate::itest;

namespace {

constexpr int not_authorized = 135;

/// haproxy 2.6 running docker/haproxy.cfg, its brokers, listen address and stats socket set
/// through the DG_* variables the file reads.
class haproxy_process {
public:
    haproxy_process() : dir_(test_dir()), log_(dir_ / "haproxy.log") {}

    bool start(const std::vector<int>& broker_ports) {
        for (int attempt = 1;; ++attempt) {
            port_ = free_port();
            std::vector<std::string> argv{"env", "DG_HAPROXY_BIND=127.0.0.1:" + std::to_string(port_),
                                          "DG_HAPROXY_STATS_SOCKET=" + socket_path().string(), "DG_HAPROXY_MAXCONN=2000"};
            for (std::size_t i = 0; i < broker_ports.size(); ++i) {
                argv.push_back("DG_BROKER_" + std::to_string(i + 1) + "=127.0.0.1:" + std::to_string(broker_ports[i]));
            }
            argv.insert(argv.end(), {"haproxy", "-f", std::string(DEVICEGATE_SOURCE_DIR) + "/docker/haproxy.cfg"});
            const auto offset = log_size(log_);
            process_ = std::make_unique<process>(argv, log_);
            if (eventually([&] { return !process_->running() || !query("show info").empty(); }, 5000ms) &&
                process_->running()) {
                return true;
            }
            // "Starting frontend mqtts: cannot bind socket (Address already in use)"
            if (process_->running() || log_since(log_, offset).find("Address already in use") == std::string::npos ||
                attempt == port_attempts) {
                return false;
            }
            drop_attempt_log(log_, offset);
        }
    }
    int port() const { return port_; }

    /// One command on the stats socket; "" if haproxy does not answer.
    std::string query(const std::string& command) const {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, socket_path().c_str(), sizeof addr.sun_path - 1);
        std::string out;
        if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
            const std::string line = command + "\n";
            if (::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size())) {
                char buf[4096];
                for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
            }
        }
        if (fd >= 0) ::close(fd);
        return out;
    }

    /// The health of one server of the backend as `show stat` reports it ("UP", "DOWN", ...).
    std::string status(const std::string& server) const {
        std::istringstream in(query("show stat"));
        std::string line;
        std::size_t column = 0;
        while (std::getline(in, line)) {
            auto fields = split(line);
            if (line.rfind("# ", 0) == 0) {
                fields[0] = fields[0].substr(2);
                column = static_cast<std::size_t>(std::find(fields.begin(), fields.end(), "status") - fields.begin());
            } else if (fields.size() > column && fields[0] == "mqtt_brokers" && fields[1] == server) {
                return fields[column];
            }
        }
        return "";
    }
    bool wait_status(const std::vector<std::string>& servers, const std::string& wanted,
                     std::chrono::milliseconds timeout) const {
        return eventually(
            [&] {
                return std::all_of(servers.begin(), servers.end(), [&](const auto& s) { return status(s) == wanted; });
            },
            timeout);
    }

private:
    static std::vector<std::string> split(const std::string& line) {
        std::vector<std::string> out;
        std::istringstream in(line);
        for (std::string f; std::getline(in, f, ',');) out.push_back(f);
        return out;
    }
    std::filesystem::path socket_path() const { return dir_ / "admin.sock"; }

    std::filesystem::path dir_, log_;
    int port_ = 0;
    std::unique_ptr<process> process_;
};

/// Runs every device's first connect through `port` with the epoll storm client.
int storm(const std::vector<device_files>& devices, int port) {
    std::vector<std::string> ids;
    for (const auto& d : devices) ids.push_back(d.id);
    auto loaded = devicegate::bench::load_storm_devices(std::filesystem::path(devices.at(0).cert).parent_path().string(), ids);
    devicegate::bench::storm_client tls(pki("root.crt"));
    return tls.run(loaded, {.port = port, .concurrency = 16}).accepted;
}

long long journal_lines(const broker& b) {
    std::ifstream in(b.dir() / "devicegate-jobs.journal");
    return std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
}

using devicegate::test::sentinel_cluster;

/// XINFO STREAM's entries-added (Redis 7) on the master: every job ever added to the stream,
/// also those the workers have deleted since; -1 while it does not answer.
long long jobs_ever_added(const sentinel_cluster& redis) {
    try {
        auto reply = redis.node_command(redis.master_port(), {"XINFO", "STREAM", "devicegate:jobs"});
        auto fields = devicegate::reply_array(reply.get(), "XINFO STREAM");
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
            if (devicegate::reply_string(fields[i], "XINFO STREAM") == "entries-added") {
                return devicegate::reply_integer(fields[i + 1], "entries-added");
            }
        }
    } catch (const std::exception&) {
    }
    return -1;
}

/// An integer command on the master; -1 while it does not answer.
long long master_integer(const sentinel_cluster& redis, const std::vector<std::string>& argv) {
    try {
        return devicegate::reply_integer(redis.node_command(redis.master_port(), argv).get(), argv.at(0));
    } catch (const std::exception&) {
        return -1;
    }
}

/// SENTINEL SET on every sentinel: takes effect at once.
void set_down_after(const sentinel_cluster& redis, std::chrono::milliseconds down_after) {
    for (int port : redis.sentinel_ports()) {
        devicegate::redis_options o;
        o.port = port;
        devicegate::redis_connection c(o);
        devicegate::expect_ok(c.command({"SENTINEL", "SET", "devicegate", "down-after-milliseconds",
                                         std::to_string(down_after.count())})
                                  .get(),
                              "SENTINEL SET");
    }
}

long long count(const nlohmann::json& state, const char* key) { return state.at(key).get<long long>(); }

double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

/// The three brokers on the Sentinel URL; every job of a Redis outage goes to the journal at
/// once (job_memory_limit 0), so a SIGKILL loses none.
std::vector<std::unique_ptr<broker>> start_brokers(const std::string& redis_url) {
    std::vector<std::unique_ptr<broker>> out;
    for (int i = 1; i <= 3; ++i) {
        out.push_back(std::make_unique<broker>(broker_options{
            .plugin_opts = {{"redis_url", redis_url}, {"broker_id", "broker-" + std::to_string(i)}, {"job_memory_limit", "0"}}}));
        if (!out.back()->start() || !out.back()->wait_for_log("redis link up", 10s)) {
            throw std::runtime_error("broker-" + std::to_string(i) + " did not start on the Sentinel URL");
        }
    }
    return out;
}

/// Two workers in one consumer group on the Sentinel URL.
std::vector<std::unique_ptr<worker_process>> start_workers(const std::string& redis_url, const fake_backends& fakes) {
    std::vector<std::unique_ptr<worker_process>> out;
    for (const char* name : {"worker-a", "worker-b"}) {
        out.push_back(std::make_unique<worker_process>(redis_url, fakes,
                                                       worker_options{.consumer_name = name, .claim_idle = "2s"}));
        if (!out.back()->start()) throw std::runtime_error(std::string(name) + " did not start on the Sentinel URL");
    }
    return out;
}

/// Every first-connect job once: each device registered once, the stream took exactly
/// `total` jobs, nothing dead, nothing left; and each worker finished jobs after the failover.
void check_every_job_once(const sentinel_cluster& redis, const fake_backends& fakes,
                          const std::vector<std::unique_ptr<worker_process>>& workers,
                          const std::vector<double>& done_at_failover, long long total) {
    CHECK(eventually([&] { return count(fakes.thingsboard_state(), "devices") == total; }, 60s));
    CHECK(eventually([&] { return master_integer(redis, {"XLEN", "devicegate:jobs"}) == 0; }, 20s));
    CHECK(jobs_ever_added(redis) == total);
    CHECK(count(fakes.thingsboard_state(), "creates") == total);
    CHECK(count(fakes.hawkbit_state(), "creates") == total);
    CHECK(master_integer(redis, {"XLEN", "devicegate:jobs:dead"}) == 0);
    for (std::size_t i = 0; i < workers.size(); ++i) {
        INFO("worker " << i);
        CHECK(workers[i]->metric("devicegate_worker_redis_up") == 1);
        CHECK(workers[i]->metric("devicegate_worker_jobs_done_total") > done_at_failover[i]);
    }
}

}  // namespace

TEST_CASE("three brokers behind haproxy, Redis failover during a connect storm: every job once, the workers go on, "
          "a revoke right after reaches every broker",
          "[multibroker]") {
    const auto test_started = clock::now();
    // down-after 60 s while the test sets up the outage; lowered to 1 s to let Sentinel act.
    sentinel_cluster redis({.master_name = "devicegate", .down_after_ms = 60000});
    fake_backends fakes;
    REQUIRE(fakes.start());
    auto workers = start_workers(redis.url(), fakes);
    auto brokers = start_brokers(redis.url());
    haproxy_process lb;
    REQUIRE(lb.start({brokers[0]->port(), brokers[1]->port(), brokers[2]->port()}));
    REQUIRE(lb.wait_status({"broker-1", "broker-2", "broker-3"}, "UP", 10s));

    // One device held on broker-1 and one on broker-2, for the revoke after the failover.
    auto held_files = make_devices("held-", 2);
    std::vector<std::unique_ptr<client>> held;
    for (int i = 0; i < 2; ++i) {
        const auto& f = held_files[static_cast<std::size_t>(i)];
        held.push_back(std::make_unique<client>(f.id, f.cert, f.key));
        REQUIRE(held.back()->connect(brokers[static_cast<std::size_t>(i)]->port()) == 0);
    }
    auto before = make_devices("before-", 100);
    CHECK(storm(before, lb.port()) == 100);
    // Every job so far is in Redis: none is on its way when the master dies.
    REQUIRE(eventually([&] { return jobs_ever_added(redis) == 102; }, 20s));

    redis.kill_master();
    auto outage = make_devices("outage-", 100);
    CHECK(storm(outage, lb.port()) == 100);  // admitted on the deny-list copy
    auto journaled = make_devices("journal-", 10);
    CHECK(connect_all(journaled, brokers[2]->port(), 4) == 10);
    auto all_journaled = [&] {
        long long total = 0;
        for (const auto& b : brokers) total += journal_lines(*b);
        return total;
    };
    REQUIRE(eventually([&] { return all_journaled() >= 110; }, 10s));
    CHECK(all_journaled() == 110);

    // broker-3 dies with its journal; haproxy stops sending devices to it.
    const long long broker3_jobs = journal_lines(*brokers[2]);
    brokers[2]->signal(SIGKILL);
    REQUIRE(brokers[2]->wait_exit(5s));
    REQUIRE(lb.wait_status({"broker-3"}, "DOWN", 10s));

    set_down_after(redis, 1000ms);
    const auto failover_started = clock::now();
    auto during = make_devices("failover-", 100);
    CHECK(storm(during, lb.port()) == 100);
    REQUIRE_NOTHROW(redis.wait_failover(30s));
    const double failover_s = seconds_since(failover_started);
    std::vector<double> done_at_failover;
    for (const auto& w : workers) done_at_failover.push_back(w->metric("devicegate_worker_jobs_done_total"));

    // Right after the failover: the brokers may not have subscribed on the new master yet.
    // The new master has no replica (the old master is dead): the revoke is in force on the
    // master, and devicegate-ctl says that no replica confirmed it (exit 5, docs/operations.md).
    for (const auto& f : held_files) {
        const auto r = ctl({"revoke", f.id, "--force"}, redis.url());
        INFO(r.out);
        CHECK(r.exit_code == 5);
        CHECK(r.out.find("the master has no connected replica") != std::string::npos);
    }
    for (auto& h : held) CHECK(h->wait_disconnected(10s));
    const double revoke_s = seconds_since(failover_started);

    REQUIRE(brokers[2]->start());
    CHECK(brokers[2]->wait_for_log("holds " + std::to_string(broker3_jobs) + " undelivered first-connect jobs", 10s));
    CHECK(brokers[2]->wait_for_log("delivered " + std::to_string(broker3_jobs) + " journaled first-connect jobs", 20s));
    for (const auto& b : brokers) {
        INFO("broker on port " << b->port());
        CHECK(eventually(
            [&] {
                client again(held_files[0].id, held_files[0].cert, held_files[0].key);
                return again.connect(b->port()) == not_authorized;
            },
            10s));
    }

    check_every_job_once(redis, fakes, workers, done_at_failover, 2 + 100 + 100 + 10 + 100);
    std::cout << "multibroker: failover " << failover_s << " s, revoke kicked on both brokers " << revoke_s
              << " s after the master's down-after was lowered, whole test " << seconds_since(test_started) << " s\n";
}
