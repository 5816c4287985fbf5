// Connect storm: what does DeviceGate cost per connect, against mosquitto's own mTLS, side
// by side in one run with the same PKI and the same load generator. Writes docs/PERFORMANCE.md.
//   native      mosquitto: cafile + crlfile (100,000 serials) + use_identity_as_username, no plugin
//   DeviceGate  the plugin with the same 100,000-serial CRL, Redis connected, first-connect jobs on
// Each round starts fresh brokers; pass 1 is every device's first connect, pass 2 the same
// devices reconnecting, pass 3 reconnecting with TLS session resumption. Then broker RSS with
// 10,000 devices connected.
#include "big_crl.hpp"
#include "cert_factory.hpp"
#include "harness.hpp"
#include "storm_client.hpp"

#include <openssl/crypto.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

using namespace devicegate::itest;
using devicegate::bench::storm_client;
using devicegate::bench::storm_device;
using devicegate::bench::storm_options;
using devicegate::bench::storm_result;

namespace {

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    }
    return -1;
}

std::string first_line(const std::string& cmd) {
    FILE* p = popen(cmd.c_str(), "r");
    char buf[512] = {};
    if (p) {
        fgets(buf, sizeof buf, p);
        pclose(p);
    }
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

struct pass_stats {
    double cps = 0, p50 = 0, p99 = 0, p999 = 0;
    int accepted = 0, failed = 0, refused = 0, resumed = 0;
};
pass_stats stats_of(const storm_result& r) {
    return {r.connects_per_second(), percentile(r.connack_ms, 0.5), percentile(r.connack_ms, 0.99),
            percentile(r.connack_ms, 0.999), r.accepted, r.failed, r.refused, r.resumed};
}

}  // namespace

int main(int argc, char** argv) {
    const int devices_n = argc > 1 ? std::atoi(argv[1]) : 2000;
    const int hold_n = argc > 2 ? std::atoi(argv[2]) : 10000;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
    const std::string out_file = argc > 4 ? argv[4] : "docs/PERFORMANCE.md";
    const int concurrency = 32;

    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;  // the brokers we start inherit it
    setrlimit(RLIMIT_NOFILE, &lim);
    if (!std::filesystem::exists(pki(".complete"))) {
        if (std::system((std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI).c_str()) != 0) return 1;
    }

    std::fprintf(stderr, "issuing %d device certificates and a 100,000-serial CRL...\n", std::max(devices_n, hold_n));
    // Not a test_dir(): those are removed after each configuration.
    const auto dir = std::filesystem::temp_directory_path() / ("devicegate-storm-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    std::vector<std::string> ids;
    for (int i = 0; i < std::max(devices_n, hold_n); ++i) {
        ids.push_back("storm-" + std::to_string(i));
        factory.issue(dir, ids.back());
    }
    const std::string crl = (dir / "subca-100k.crl.pem").string();
    devicegate::bench::write_big_crl(pki("subca-a.crt"), pki("subca-a.key"), 100000, {}, crl, /*pem=*/true);
    auto all = devicegate::bench::load_storm_devices(dir.string(), ids);
    std::vector<storm_device> devices(std::make_move_iterator(all.begin()),
                                      std::make_move_iterator(all.begin() + devices_n));
    all.erase(all.begin(), all.begin() + devices_n);
    storm_client client(pki("root.crt"));

    broker_options native{.crl_files = {},
                          .listener_extra = "use_identity_as_username true\ncrlfile " + crl,
                          .plugin = false};
    broker_options native_no_crl{.crl_files = {}, .listener_extra = "use_identity_as_username true", .plugin = false};
    auto devicegate_opts = [&](const redis_server& redis) {
        return broker_options{.plugin_opts = {{"stats_interval", "0s"}}, .crl_files = {crl}, .redis = &redis};
    };

    // config -> pass -> stats over rounds
    std::map<std::string, std::vector<pass_stats>> results;
    const char* passes[] = {"first connect", "reconnect", "reconnect, TLS resumption"};
    for (int round = 0; round < rounds; ++round) {
        for (const std::string config : {"native", "DeviceGate", "native without crlfile"}) {
            std::fprintf(stderr, "round %d: %s\n", round + 1, config.c_str());
            redis_server redis;
            if (!redis.start()) return 1;
            broker b(config == "native" ? native : config == "DeviceGate" ? devicegate_opts(redis) : native_no_crl);
            if (!b.start()) {
                std::fprintf(stderr, "%s broker did not start:\n%s\n", config.c_str(), b.log().c_str());
                return 1;
            }
            for (auto& d : devices) d.session.reset();
            for (int p = 0; p < 3; ++p) {
                storm_options o{.port = b.port(), .concurrency = concurrency, .resume = p == 2};
                auto r = client.run(devices, o);
                results[config + "|" + passes[p]].push_back(stats_of(r));
                if (r.accepted != devices_n) {
                    std::fprintf(stderr, "%s %s: only %d of %d accepted (%d refused, %d failed)\n%s\n", config.c_str(),
                                 passes[p], r.accepted, devices_n, r.refused, r.failed, b.log().substr(0, 4000).c_str());
                    return 1;
                }
            }
            b.stop();
            end_of_test(false);
        }
    }

    // Memory with hold_n devices connected.
    std::map<std::string, std::pair<long, long>> memory;  // config -> (idle KiB, connected KiB)
    std::vector<storm_device>& hold = all.size() >= static_cast<std::size_t>(hold_n) ? all : devices;
    for (const std::string config : {"native", "DeviceGate", "native without crlfile"}) {
        std::fprintf(stderr, "memory: %s with %d devices\n", config.c_str(), hold_n);
        redis_server redis;
        if (!redis.start()) return 1;
        broker b(config == "native" ? native : config == "DeviceGate" ? devicegate_opts(redis) : native_no_crl);
        if (!b.start()) return 1;
        std::this_thread::sleep_for(500ms);
        long idle = rss_kib(b.pid());
        std::vector<storm_device> subset;
        for (int i = 0; i < hold_n && i < static_cast<int>(hold.size()); ++i) subset.push_back(std::move(hold[i]));
        auto r = client.run(subset, {.port = b.port(), .concurrency = 64, .hold = true});
        std::this_thread::sleep_for(500ms);
        long connected = rss_kib(b.pid());
        if (r.accepted != static_cast<int>(subset.size())) {
            std::fprintf(stderr, "memory run: only %d of %zu connected\n", r.accepted, subset.size());
        }
        memory[config] = {idle, connected};
        client.release();
        for (std::size_t i = 0; i < subset.size(); ++i) hold[i] = std::move(subset[i]);
        b.stop();
        end_of_test(false);
    }

    // The report.
    auto median = [](std::vector<pass_stats> v, double pass_stats::*field) {
        std::vector<double> x;
        for (auto& s : v) x.push_back(s.*field);
        return percentile(x, 0.5);
    };
    utsname un{};
    uname(&un);
    std::ostringstream md;
    md << "# DeviceGate performance\n\n"
       << "Written by `bench/run-all` (bench/connect_storm.cpp). Every number below comes from one run "
          "on one machine; the configurations ran back to back, with the same PKI (P-256), the same "
          "devices and the same load generator, so compare the ratios rather than the absolute values.\n\n"
       << "## Machine and versions\n\n"
       << "| | |\n|---|---|\n"
       << "| CPU | " << first_line("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'") << " |\n"
       << "| cores | " << std::thread::hardware_concurrency() << " (the broker is single-threaded; the load generator "
       << "runs beside it) |\n"
       << "| kernel | " << un.sysname << " " << un.release << " |\n"
       << "| mosquitto | " << first_line("mosquitto -h 2>&1 | head -1") << " |\n"
       << "| OpenSSL | " << OpenSSL_version(OPENSSL_VERSION) << " |\n"
       << "| Redis | " << first_line("redis-server --version") << " |\n\n"
       << "## Connect throughput and latency\n\n"
       << devices_n << " distinct devices, " << concurrency << " connects in flight; each does TCP connect, TLS 1.3 "
       << "handshake with its own key, CONNECT, one QoS 1 PUBLISH, DISCONNECT. Latency is TCP connect start to CONNACK. "
       << "Median over " << rounds << " rounds; each round starts fresh brokers (and a fresh Redis).\n\n"
       << "| configuration | pass | connects/s | p50 ms | p99 ms | p99.9 ms | resumed | vs native |\n"
       << "|---|---|---|---|---|---|---|---|\n";
    std::map<std::string, double> ratio;
    for (const char* pass : passes) {
        double native_cps = median(results[std::string("native|") + pass], &pass_stats::cps);
        for (const std::string config : {"native", "DeviceGate", "native without crlfile"}) {
            auto& v = results[config + "|" + pass];
            double cps = median(v, &pass_stats::cps);
            ratio[config + "|" + pass] = cps / native_cps;
            char row[512];
            std::snprintf(row, sizeof row, "| %s | %s | %.0f | %.2f | %.2f | %.2f | %d | %.1f%% |\n", config.c_str(), pass,
                          cps, median(v, &pass_stats::p50), median(v, &pass_stats::p99), median(v, &pass_stats::p999),
                          v.front().resumed, 100.0 * cps / native_cps);
            md << row;
        }
    }
    md << "\nRaw connects/s per round:\n\n| configuration | pass | rounds |\n|---|---|---|\n";
    for (auto& [key, v] : results) {
        md << "| " << key.substr(0, key.find('|')) << " | " << key.substr(key.find('|') + 1) << " |";
        for (auto& s : v) md << " " << static_cast<long>(s.cps);
        md << " |\n";
    }
    md << "\n## Broker memory with " << hold_n << " devices connected\n\n"
       << "| configuration | RSS idle MiB | RSS connected MiB | per device KiB |\n|---|---|---|---|\n";
    for (auto& [config, m] : memory) {
        char row[256];
        std::snprintf(row, sizeof row, "| %s | %.1f | %.1f | %.1f |\n", config.c_str(),
                      static_cast<double>(m.first) / 1024.0, static_cast<double>(m.second) / 1024.0,
                      static_cast<double>(m.second - m.first) / hold_n);
        md << row;
    }
    const double rss_ratio =
        static_cast<double>(memory["DeviceGate"].second) / static_cast<double>(memory["native"].second);
    char summary[1024];
    std::snprintf(summary, sizeof summary,
                  "\n## Targets (DESIGN.md section 5)\n\n"
                  "| target | measured | |\n|---|---|---|\n"
                  "| DeviceGate >= 95%% of native connects/s, first connects | %.1f%% | %s |\n"
                  "| DeviceGate >= 95%% of native connects/s, reconnects | %.1f%% | %s |\n"
                  "| the plugin adds <= 5%% RSS (%d devices connected) | %+.1f%% | %s |\n",
                  100 * ratio["DeviceGate|first connect"], ratio["DeviceGate|first connect"] >= 0.95 ? "met" : "missed",
                  100 * ratio["DeviceGate|reconnect"], ratio["DeviceGate|reconnect"] >= 0.95 ? "met" : "missed", hold_n,
                  100 * (rss_ratio - 1), rss_ratio <= 1.05 ? "met" : "missed");
    md << summary;
    std::string report = md.str();
    std::fputs(report.c_str(), stdout);
    if (out_file != "-") {
        std::filesystem::create_directories(std::filesystem::path(out_file).parent_path());
        std::ofstream(out_file + ".measured") << report;
        std::fprintf(stderr, "measurements written to %s.measured\n", out_file.c_str());
    }
    end_of_test(false);
    std::filesystem::remove_all(dir);
    return 0;
}
