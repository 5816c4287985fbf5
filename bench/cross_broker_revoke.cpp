// Revocation to disconnect across brokers (issue 16): two brokers with the plugin on a Redis
// Sentinel URL (master + replica + three sentinels, tests/support/redis_sentinel_cluster.hpp),
// the devices on broker B, `devicegate-ctl revoke` run in-process on the
// Sentinel URL (as the CLI does, and as bench/revoke_bench.cpp does against one Redis). For
// each revocation: ctl started -> ctl returned -> the device's connection closed. Broker CPU
// from /proc/PID/stat over the run. Target: p99 <= 150 ms from the start of the revoke.
//   cross_broker_revoke [revocations]
#include "bench_stats.hpp"
#include "ctl.hpp"
#include "harness.hpp"
#include "redis_sentinel_cluster.hpp"
#include "stream_support.hpp"

#include <cstdio>
#include <cstdlib>
#include <sstream>

using namespace devicegate::itest;
using devicegate::bench::cpu_seconds;
using devicegate::bench::load_average;
using devicegate::bench::ms;
using devicegate::bench::summarize;

namespace {

struct samples {
    std::vector<double> total_ms, after_return_ms, ctl_ms;
    double cpu_a = 0, cpu_b = 0;  // seconds over all revocations
};

std::unique_ptr<broker> start_broker(const std::string& redis_url, const std::string& id) {
    auto b = std::make_unique<broker>(broker_options{.plugin_opts = {{"redis_url", redis_url}, {"broker_id", id}}});
    if (!b->start() || !b->wait_for_log("redis link up", 10s)) {
        std::fprintf(stderr, "%s did not start:\n%s\n", id.c_str(), b->log().c_str());
        return nullptr;
    }
    return b;
}

/// Connects `count` devices to `port`; empty if one is not admitted.
std::vector<std::unique_ptr<client>> connect_devices(int count, int port) {
    std::vector<std::unique_ptr<client>> clients;
    for (const auto& d : make_devices("xrevoke-", count)) {
        clients.push_back(std::make_unique<client>(d.id, d.cert, d.key));
        if (clients.back()->connect(port) != 0) {
            std::fprintf(stderr, "%s was not admitted\n", d.id.c_str());
            return {};
        }
    }
    return clients;
}

/// Revokes every device in turn and waits for its disconnect; false on the first failure.
bool revoke_all(std::vector<std::unique_ptr<client>>& clients, const std::string& url, const broker& a,
                const broker& b, samples& s) {
    const double cpu_a = cpu_seconds(a.pid()), cpu_b = cpu_seconds(b.pid());
    for (std::size_t i = 0; i < clients.size(); ++i) {
        std::ostringstream out, err;
        const auto started = clock::now();
        const int code = devicegate::ctl::run({"revoke", "xrevoke-" + std::to_string(i), "--force"}, out, err, url, "");
        const auto returned = clock::now();
        if (code != 0) {
            std::fprintf(stderr, "revoke failed (%d): %s%s\n", code, out.str().c_str(), err.str().c_str());
            return false;
        }
        if (!clients[i]->wait_disconnected(5s)) {
            std::fprintf(stderr, "xrevoke-%zu was not disconnected within 5 s\n", i);
            return false;
        }
        const auto closed = clients[i]->disconnected_at();
        s.total_ms.push_back(ms(closed - started));
        s.after_return_ms.push_back(ms(closed - returned));
        s.ctl_ms.push_back(ms(returned - started));
        // Spread the revocations over the broker's tick phase, as real ones are.
        std::this_thread::sleep_for(std::chrono::milliseconds(7 * (i % 15)));
    }
    s.cpu_a = cpu_seconds(a.pid()) - cpu_a;
    s.cpu_b = cpu_seconds(b.pid()) - cpu_b;
    return true;
}

void report(const samples& s, const std::string& load_before) {
    const auto total = summarize(s.total_ms), after = summarize(s.after_return_ms), ctl = summarize(s.ctl_ms);
    const double n = static_cast<double>(s.total_ms.size());
    std::printf("## Revocation -> disconnect across brokers (%zu revocations)\n\n", s.total_ms.size());
    std::printf("Two brokers (A, B) with the plugin on `redis-sentinel://` (Redis 7.0 master + replica + three "
                "sentinels on loopback); each device is connected to broker B; `devicegate-ctl revoke --force` runs "
                "in-process on the Sentinel URL (master discovery, the revoke on the master, WAIT for the replica).\n\n");
    std::printf("| path | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n");
    std::printf("| ctl revoke started -> device on broker B disconnected | %.1f | %.1f | %.1f |\n", total.p50, total.p99,
                total.max);
    std::printf("| ctl revoke returned -> device disconnected | %.1f | %.1f | %.1f |\n", after.p50, after.p99, after.max);
    std::printf("| ctl revoke itself (started -> returned) | %.1f | %.1f | %.1f |\n\n", ctl.p50, ctl.p99, ctl.max);
    std::printf("Broker CPU per revocation (utime + stime from /proc/PID/stat over the run): broker B %.2f ms, "
                "broker A %.2f ms.\n",
                s.cpu_b * 1000 / n, s.cpu_a * 1000 / n);
    std::printf("Load average (1/5/15 min) before: %s, after: %s.\n", load_before.c_str(), load_average().c_str());
    std::printf("\nTarget p99 <= 150 ms from the start of the revoke: %s (p99 %.1f ms).\n",
                total.p99 <= 150 ? "met" : "MISSED", total.p99);
}

int run(int revocations) {
    const std::string load_before = load_average();
    devicegate::test::sentinel_cluster redis({.master_name = "devicegate"});
    auto a = start_broker(redis.url(), "broker-a");
    auto b = start_broker(redis.url(), "broker-b");
    if (!a || !b) return 1;
    auto clients = connect_devices(revocations, b->port());
    if (clients.empty()) return 1;
    samples s;
    if (!revoke_all(clients, redis.url(), *a, *b, s)) return 1;
    report(s, load_before);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const int revocations = argc > 1 ? std::atoi(argv[1]) : 120;
    if (revocations < 1) {
        std::fprintf(stderr, "usage: cross_broker_revoke [revocations >= 1]\n");
        return 2;
    }
    if (!std::filesystem::exists(pki(".complete"))) {
        if (std::system((std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI).c_str()) != 0) return 1;
    }
    int rc = 1;
    try {
        rc = run(revocations);
    } catch (const std::exception& e) {  // the Sentinel fixture throws when Redis does not start
        std::fprintf(stderr, "cross_broker_revoke: %s\n", e.what());
    }
    end_of_test(rc != 0);
    return rc;
}
