// Connect storm: what DeviceGate costs per connect against mosquitto's own mTLS, side by side
// in one run with the same PKI, devices and load generator. Writes docs/PERFORMANCE.md(.measured).
//   native + crlfile        mosquitto: cafile + crlfile (100,000 serials) + use_identity_as_username
//   native without crlfile  the same without crlfile: the floor (no revocation check at all)
//   native + an idle thread the floor with one idle thread (bench/idle_thread.cpp preloaded):
//                           what any plugin with a background thread costs mosquitto
//   native + a minimal plugin the floor's listener with bench/minimal_plugin.cpp instead of
//                           use_identity_as_username: what any authentication plugin costs
//   DeviceGate              the plugin, the same 100,000-serial CRL, Redis, first-connect jobs on
//   DeviceGate without Redis the plugin and the CRL only
// Each round starts every configuration's broker (and Redis) fresh and at once; each pass
// alternates them in blocks of devices, in a shuffled order (a shared machine's speed drifts by
// 10-20% over minutes, which hits every configuration alike this way). Each broker's CPU time
// (schedstat run time of all its threads) is read at its blocks' starts and a pass's CPU is
// the sum of its blocks', less the broker's idle rate outside its own blocks: connects/s
// depends on the load generator, which shares the cores; broker CPU per connect does not.
// Pass 1 is every device's first connect, pass 2 the same devices reconnecting, pass 3
// reconnecting with TLS session resumption. Then broker RSS with 10,000 devices connected.
#include "bench_stats.hpp"
#include "big_crl.hpp"
#include "cert_factory.hpp"
#include "harness.hpp"
#include "storm_client.hpp"

#include <openssl/crypto.h>
#include <csignal>
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

using namespace devicegate::itest;
using devicegate::bench::load_average;
using devicegate::bench::percentile;
using devicegate::bench::quantile;
using devicegate::bench::storm_client;
using devicegate::bench::storm_device;
using devicegate::bench::storm_options;
using devicegate::bench::storm_result;

namespace {

const char* const native_crl = "native + crlfile";
const char* const native_floor = "native without crlfile";
const char* const native_thread = "native + an idle thread";
const char* const native_plugin = "native + a minimal plugin";
const char* const devicegate_full = "DeviceGate";
const char* const devicegate_no_redis = "DeviceGate without Redis";
const char* const devicegate_before = "DeviceGate before";

/// DEVICEGATE_STORM_BEFORE=<an older devicegate.so>: one more configuration, "DeviceGate
/// before" (that plugin with Redis and jobs, as "DeviceGate"), interleaved with the others,
/// for a before/after comparison under the same load.
const char* before_plugin() {
    const char* path = std::getenv("DEVICEGATE_STORM_BEFORE");
    return path != nullptr && *path != '\0' ? path : nullptr;
}

std::vector<std::string> all_configs() {
    std::vector<std::string> out = {native_crl,      native_floor,    native_thread,
                                    native_plugin,   devicegate_full, devicegate_no_redis};
    if (before_plugin() != nullptr) out.push_back(devicegate_before);
    return out;
}
const std::vector<std::string> configs = all_configs();
const char* const passes[] = {"first connect", "reconnect", "reconnect, TLS resumption"};

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    }
    return -1;
}


/// redis-server's own CPU seconds (INFO cpu: used_cpu_sys + used_cpu_user).
double redis_cpu_seconds(const redis_server& redis) {
    std::string info = redis.command({"INFO", "cpu"});
    auto field = [&](const std::string& name) {
        auto at = info.find(name + ":");
        return at == std::string::npos ? 0.0 : std::atof(info.c_str() + at + name.size() + 1);
    };
    return field("used_cpu_sys") + field("used_cpu_user");
}

double load_1min() {
    std::ifstream in("/proc/loadavg");
    double one = 0;
    in >> one;
    return one;
}

std::string first_line(const std::string& cmd) {
    FILE* p = popen(cmd.c_str(), "r");
    char buf[512] = {};
    if (p) {
        if (fgets(buf, sizeof buf, p) == nullptr) buf[0] = 0;
        pclose(p);
    }
    std::string s(buf);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

struct pass_stats {
    double cps = 0, p50 = 0, p99 = 0, p999 = 0;
    double cpu_ms = 0;        // broker CPU per accepted connect (all its threads)
    double main_cpu_ms = 0;   // of which mosquitto's own thread
    double redis_cpu_ms = 0;  // redis-server CPU per accepted connect (DeviceGate only)
    int resumed = 0;
    double load = 0;          // the 1-minute load average when the pass ended
};

struct setup {
    std::string crl;
    const redis_server* redis = nullptr;
};

/// The older plugin's lines, written by hand: the harness's plugin line names this build's.
std::string before_plugin_lines(const setup& s) {
    const auto state = std::filesystem::temp_directory_path() / ("devicegate-storm-before-" + std::to_string(::getpid()));
    std::filesystem::create_directories(state);
    std::ostringstream conf;
    conf << "plugin " << before_plugin() << "\n"
         << "plugin_opt_tenant_ca_file " << pki("subca-a.crt") << "\n"
         << "plugin_opt_ica_file " << pki("ica.crt") << "\n"
         << "plugin_opt_root_ca_file " << pki("root.crt") << "\n"
         << "plugin_opt_crl_file " << s.crl << "\n"
         << "plugin_opt_state_dir " << state.string() << "\n"
         << "plugin_opt_redis_url " << s.redis->url() << "\n"
         << "plugin_opt_stats_interval 0s\n";
    return conf.str();
}

// mosquitto's default log types (src/conf.c config__init: error, warning, notice,
// information), as a production broker runs: the harness writes "log_type all", which would
// make every broker write its debug lines (several per connect). "none" clears the set
// (conf.c: log_type none assigns, the others add); log_type is global wherever it stands.
const std::string default_logging =
    "log_type none\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n";

broker_options options_for(const std::string& config, const setup& s) {
    if (config == devicegate_before) {
        return {.crl_files = {}, .listener_extra = default_logging + before_plugin_lines(s), .plugin = false};
    }
    if (config == native_crl) {
        return {.crl_files = {}, .listener_extra = default_logging + "use_identity_as_username true\ncrlfile " + s.crl,
                .plugin = false};
    }
    if (config == native_plugin) {
        return {.crl_files = {}, .listener_extra = default_logging + "plugin " + DEVICEGATE_MINIMAL_PLUGIN, .plugin = false};
    }
    if (config == native_floor || config == native_thread) {
        return {.crl_files = {}, .listener_extra = default_logging + "use_identity_as_username true", .plugin = false};
    }
    broker_options o{.plugin_opts = {{"stats_interval", "0s"}}, .crl_files = {s.crl}, .listener_extra = default_logging};
    if (config == devicegate_full) o.redis = s.redis;
    // DEVICEGATE_STORM_OPTS="name value;name value": more plugin options for the DeviceGate
    // configurations (experiments, e.g. "fleet_sessions off" or "leaf_signature always").
    if (const char* extra = std::getenv("DEVICEGATE_STORM_OPTS")) {
        std::istringstream in(extra);
        for (std::string item; std::getline(in, item, ';');) {
            const auto space = item.find(' ');
            if (space != std::string::npos) o.plugin_opts.emplace_back(item.substr(0, space), item.substr(space + 1));
        }
    }
    return o;
}

using results_map = std::map<std::string, std::vector<pass_stats>>;  // "config|pass" -> rounds

/// One block of one configuration in one pass: the same devices, run moments after (or
/// before) every other configuration's turn with them.
struct block_stats {
    int connects = 0;
    double seconds = 0;      // the load generator's wall time for the block
    double cpu_seconds = 0;  // the broker's, from its block's start to its next block's start
};
using blocks_map = std::map<std::string, std::vector<block_stats>>;  // "config|pass" -> every round's blocks

/// DEVICEGATE_STORM_PERF="perf record -F 1999 -o /tmp/storm-%c-%s.data -p %p": started against
/// the broker (%p its pid, %c the configuration, %s the pass 0..2) around each block, stopped with
/// SIGINT (a block's profile replaces the pass's previous one: set DEVICEGATE_STORM_BLOCK to the
/// number of devices for one profile per pass).
std::unique_ptr<process> start_profiler(const std::string& config, int pass, pid_t broker_pid) {
    const char* command = std::getenv("DEVICEGATE_STORM_PERF");
    if (command == nullptr) return nullptr;
    std::string name = config;
    std::replace(name.begin(), name.end(), ' ', '-');
    std::vector<std::string> argv;
    std::istringstream words(command);
    for (std::string w; words >> w;) {
        for (auto at = w.find("%p"); at != std::string::npos; at = w.find("%p")) w.replace(at, 2, std::to_string(broker_pid));
        for (auto at = w.find("%c"); at != std::string::npos; at = w.find("%c")) w.replace(at, 2, name);
        for (auto at = w.find("%s"); at != std::string::npos; at = w.find("%s")) w.replace(at, 2, std::to_string(pass));
        argv.push_back(w);
    }
    auto p = std::make_unique<process>(argv, std::filesystem::temp_directory_path() /
                                                 ("storm-perf-" + name + "-" + std::to_string(pass) + ".log"));
    std::this_thread::sleep_for(1s);  // let it attach
    return p;
}

/// DEVICEGATE_STORM_PIN=1: every broker (every thread) on CPU 0, this load generator and the
/// redis-servers (started by it) on CPU 1, so that a broker's CPU time is not inflated by
/// sharing a core's caches with them (main() pins this process first).
bool pinned() {
    const char* pin = std::getenv("DEVICEGATE_STORM_PIN");
    return pin != nullptr && std::string(pin) == "1";
}

void pin_to(pid_t tid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    ::sched_setaffinity(tid, sizeof set, &set);
}

void pin_process(pid_t pid, int cpu) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        pin_to(static_cast<pid_t>(std::stol(task.path().filename().string())), cpu);
    }
}

/// CPU seconds of every thread of `pid` (sum of /proc/PID/task/*/schedstat run times, in ns):
/// finer than /proc/PID/stat's clock ticks, and the broker's own thread apart. The plugin's
/// threads live as long as the broker, so none is missed by having exited.
struct broker_cpu {
    double all = 0, main_thread = 0;
};
broker_cpu broker_cpu_seconds(pid_t pid) {
    broker_cpu out;
    bool main_seen = false;
    const auto tasks = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& task : std::filesystem::directory_iterator(tasks)) {
        std::ifstream in(task.path() / "schedstat");
        unsigned long long ns = 0;
        if (!(in >> ns)) continue;  // the thread ended meanwhile
        const double s = static_cast<double>(ns) / 1e9;
        out.all += s;
        if (task.path().filename() == std::to_string(pid)) {
            out.main_thread = s;
            main_seen = true;
        }
    }
    // Without it every CPU time would read 0 (a kernel without schedstats, a broker gone).
    if (!main_seen) throw std::runtime_error("cannot read " + tasks + "/" + std::to_string(pid) + "/schedstat");
    return out;
}

broker_cpu operator-(const broker_cpu& a, const broker_cpu& b) { return {a.all - b.all, a.main_thread - b.main_thread}; }

/// Idle CPU per second of every broker of a round (mosquitto's and the plugin's timers),
/// "config" -> ms/s per round; measured before the round's passes, and subtracted from each
/// broker's time outside its own blocks.
std::map<std::string, std::vector<double>> idle_ms_per_s;

/// The devices split into blocks; a round alternates the configurations block by block.
using device_blocks = std::vector<std::vector<storm_device>>;

/// DEVICEGATE_STORM_BLOCK=<devices>: the block size (default 250).
std::size_t block_size() {
    const char* v = std::getenv("DEVICEGATE_STORM_BLOCK");
    const long n = v != nullptr ? std::atol(v) : 250;
    return n > 0 ? static_cast<std::size_t>(n) : 250;
}

/// Starts the broker; native + an idle thread's with bench/idle_thread.cpp preloaded.
bool start_broker(const std::string& config, broker& b) {
    if (config != native_thread) return b.start();
    ::setenv("LD_PRELOAD", DEVICEGATE_IDLE_THREAD_LIB, 1);
    const bool started = b.start();
    ::unsetenv("LD_PRELOAD");
    if (!started) return false;
    const auto tasks = std::filesystem::path("/proc") / std::to_string(b.pid()) / "task";
    const auto threads = std::distance(std::filesystem::directory_iterator(tasks), std::filesystem::directory_iterator());
    if (threads != 2) {
        std::fprintf(stderr, "%s: the broker has %td threads, not 2: %s was not preloaded\n", config.c_str(), threads,
                     DEVICEGATE_IDLE_THREAD_LIB);
        return false;
    }
    return true;
}

/// One round: every configuration's broker (and Redis) started fresh and running at once;
/// each pass alternates them block by block, in a new shuffled order per block (so that no
/// configuration always follows the same one), so that a slower or faster minute of a shared
/// machine falls on every configuration alike. A broker's CPU for a block is read from the
/// block's start to its next block's start, so that the work its threads finish after the
/// block counts; the idle CPU it spends meanwhile (its rate measured before the passes) is
/// taken off. connects/s is over its own blocks. False on failure.
bool run_round(const std::vector<std::string>& run, int round, const std::string& crl, device_blocks& blocks,
               storm_client& client, results_map& results, blocks_map& block_results) {
    using wall = std::chrono::steady_clock;
    struct running {
        std::unique_ptr<redis_server> redis;
        std::unique_ptr<broker> b;
        std::vector<std::vector<std::shared_ptr<SSL_SESSION>>> sessions;  // per block, per device
        broker_cpu idle_rate;                                             // CPU seconds per second
    };
    std::map<std::string, running> brokers;
    for (const auto& config : run) {
        auto& r = brokers[config];
        r.redis = std::make_unique<redis_server>();
        if (!r.redis->start()) return false;
        r.b = std::make_unique<broker>(options_for(config, {crl, r.redis.get()}));
        if (!start_broker(config, *r.b)) {
            std::fprintf(stderr, "%s broker did not start:\n%s\n", config.c_str(), r.b->log().c_str());
            return false;
        }
        if (pinned()) pin_process(r.b->pid(), 0);
        for (const auto& block : blocks) r.sessions.emplace_back(block.size());
    }
    std::this_thread::sleep_for(1s);  // every broker past its start
    {
        constexpr auto idle_window = 3s;
        std::map<std::string, broker_cpu> before;
        for (const auto& config : run) before[config] = broker_cpu_seconds(brokers[config].b->pid());
        std::this_thread::sleep_for(idle_window);
        const double seconds = std::chrono::duration<double>(idle_window).count();
        for (const auto& config : run) {
            const auto d = broker_cpu_seconds(brokers[config].b->pid()) - before[config];
            brokers[config].idle_rate = {d.all / seconds, d.main_thread / seconds};
            idle_ms_per_s[config].push_back(1000.0 * d.all / seconds);
        }
    }
    std::mt19937 shuffle_order(static_cast<std::mt19937::result_type>(round));  // reproducible
    for (int p = 0; p < 3; ++p) {
        struct window {  // one block of one configuration, from its start to its next block's start
            wall::time_point start;
            double own_seconds = 0;  // the block itself, start to end
            broker_cpu cpu_at_start;
        };
        std::map<std::string, std::vector<window>> windows;
        std::map<std::string, std::vector<block_stats>> pass_blocks;
        std::map<std::string, storm_result> acc;
        std::map<std::string, double> redis0;
        for (const auto& config : run) redis0[config] = redis_cpu_seconds(*brokers[config].redis);
        for (std::size_t k = 0; k < blocks.size(); ++k) {
            std::vector<std::string> order = run;
            std::shuffle(order.begin(), order.end(), shuffle_order);
            for (const auto& config : order) {
                auto& br = brokers[config];
                auto& block = blocks[k];
                for (std::size_t i = 0; i < block.size(); ++i) block[i].session = br.sessions[k][i];
                auto profiler = start_profiler(config, p, br.b->pid());  // before the block's clock starts
                auto& w = windows[config].emplace_back();
                w.cpu_at_start = broker_cpu_seconds(br.b->pid());
                w.start = wall::now();
                auto r = client.run(block, {.port = br.b->port(), .concurrency = 32, .resume = p == 2});
                w.own_seconds = std::chrono::duration<double>(wall::now() - w.start).count();
                if (profiler) {
                    profiler->signal(SIGINT);
                    profiler->wait_exit(60s);
                }
                for (std::size_t i = 0; i < block.size(); ++i) br.sessions[k][i] = block[i].session;
                if (r.accepted != static_cast<int>(block.size())) {
                    std::fprintf(stderr, "%s %s: only %d of %zu accepted (%d refused, %d failed)\n%s\n", config.c_str(),
                                 passes[p], r.accepted, block.size(), r.refused, r.failed,
                                 br.b->log().substr(0, 4000).c_str());
                    return false;
                }
                pass_blocks[config].push_back({r.accepted, r.seconds, 0});
                auto& a = acc[config];
                a.accepted += r.accepted;
                a.resumed += r.resumed;
                a.seconds += r.seconds;
                a.connack_ms.insert(a.connack_ms.end(), r.connack_ms.begin(), r.connack_ms.end());
                // The job producer's and the fleet registry's lingers (50 and 25 ms) end on this
                // broker's time, not in the next configuration's block.
                std::this_thread::sleep_for(100ms);
            }
        }
        std::this_thread::sleep_for(300ms);  // the last blocks' lingering background work
        const auto pass_end = wall::now();
        for (const auto& config : run) {
            const auto& br = brokers[config];
            const auto cpu_end = broker_cpu_seconds(br.b->pid());
            auto& ws = windows[config];
            auto& bl = pass_blocks[config];
            broker_cpu used;  // the pass: the sum of its blocks
            for (std::size_t k = 0; k < ws.size(); ++k) {
                const bool last = k + 1 == ws.size();
                const auto end_cpu = last ? cpu_end : ws[k + 1].cpu_at_start;
                const auto end_time = last ? pass_end : ws[k + 1].start;
                const double outside = std::chrono::duration<double>(end_time - ws[k].start).count() - ws[k].own_seconds;
                const auto window = end_cpu - ws[k].cpu_at_start;
                bl[k].cpu_seconds = window.all - br.idle_rate.all * outside;
                used.all += bl[k].cpu_seconds;
                used.main_thread += window.main_thread - br.idle_rate.main_thread * outside;
            }
            auto& all_blocks = block_results[config + "|" + passes[p]];
            all_blocks.insert(all_blocks.end(), bl.begin(), bl.end());
            const auto& a = acc[config];
            const double n = std::max(1, a.accepted);
            pass_stats s{a.connects_per_second(), percentile(a.connack_ms, 0.5), percentile(a.connack_ms, 0.99),
                         percentile(a.connack_ms, 0.999)};
            s.cpu_ms = 1000.0 * used.all / n;
            s.main_cpu_ms = 1000.0 * used.main_thread / n;
            s.redis_cpu_ms = 1000.0 * (redis_cpu_seconds(*br.redis) - redis0[config]) / n;
            s.resumed = a.resumed;
            s.load = load_1min();
            std::fprintf(stderr, "  %-26s %-26s %7.0f connects/s  %.3f ms broker CPU/connect (%.3f its main thread)\n",
                         config.c_str(), passes[p], s.cps, s.cpu_ms, s.main_cpu_ms);
            results[config + "|" + passes[p]].push_back(s);
        }
    }
    for (auto& [config, r] : brokers) r.b->stop();
    end_of_test(false);
    return true;
}

struct memory_stats {
    long idle_kib = 0, connected_kib = 0;
    bool libcurl = false;  // libcurl mapped into the broker
};

bool maps_library(pid_t pid, const std::string& name) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    while (std::getline(in, line)) {
        if (line.find(name) != std::string::npos) return true;
    }
    return false;
}

/// Broker RSS idle and with every device of `hold` connected, on a fresh broker.
bool measure_memory(const std::string& config, const std::string& crl, std::vector<storm_device>& hold,
                    storm_client& client, memory_stats& out) {
    redis_server redis;
    if (!redis.start()) return false;
    broker b(options_for(config, {crl, &redis}));
    if (!start_broker(config, b)) return false;
    std::this_thread::sleep_for(500ms);
    out.idle_kib = rss_kib(b.pid());
    auto r = client.run(hold, {.port = b.port(), .concurrency = 64, .hold = true});
    std::this_thread::sleep_for(500ms);
    out.connected_kib = rss_kib(b.pid());
    out.libcurl = maps_library(b.pid(), "libcurl");
    if (r.accepted != static_cast<int>(hold.size())) {
        std::fprintf(stderr, "memory run: only %d of %zu connected\n", r.accepted, hold.size());
    }
    client.release();
    b.stop();
    end_of_test(false);
    return true;
}

double median_of(const std::vector<pass_stats>& v, double pass_stats::*field) {
    std::vector<double> x;
    for (const auto& s : v) x.push_back(s.*field);
    return devicegate::bench::median(x);
}

}  // namespace

std::string report(const results_map& results, const blocks_map& blocks, const std::map<std::string, memory_stats>& memory,
                   int devices_n, int hold_n, int rounds, const std::string& load_before, const std::string& load_after);
namespace {
std::string paired_section(const blocks_map& blocks);
}

int main(int argc, char** argv) {
    const int devices_n = argc > 1 ? std::atoi(argv[1]) : 2000;
    const int hold_n = argc > 2 ? std::atoi(argv[2]) : 10000;
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
    const std::string out_file = argc > 4 ? argv[4] : "docs/PERFORMANCE.md";

    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;  // the brokers we start inherit it
    setrlimit(RLIMIT_NOFILE, &lim);
    if (!std::filesystem::exists(pki(".complete"))) {
        if (std::system((std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI).c_str()) != 0) return 1;
    }
    const std::string load_before = load_average();
    std::fprintf(stderr, "issuing %d device certificates and a 100,000-serial CRL...\n", devices_n + hold_n);
    // Not a test_dir(): those are removed after each configuration.
    const auto dir = std::filesystem::temp_directory_path() / ("devicegate-storm-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    std::vector<std::string> ids;
    for (int i = 0; i < devices_n + hold_n; ++i) {
        ids.push_back("storm-" + std::to_string(i));
        factory.issue(dir, ids.back());
    }
    const std::string crl = (dir / "subca-100k.crl.pem").string();
    devicegate::bench::write_big_crl(pki("subca-a.crt"), pki("subca-a.key"), 100000, {}, crl, /*pem=*/true);
    auto all = devicegate::bench::load_storm_devices(dir.string(), ids);
    std::vector<storm_device> devices(std::make_move_iterator(all.begin()),
                                      std::make_move_iterator(all.begin() + devices_n));
    std::vector<storm_device> hold(std::make_move_iterator(all.begin() + devices_n), std::make_move_iterator(all.end()));
    storm_client client(pki("root.crt"));

    // DEVICEGATE_STORM_PORT=<port>: the three passes against a broker started elsewhere (e.g.
    // under valgrind --tool=callgrind, with callgrind_control -z / -d around a pass).
    if (const char* port = std::getenv("DEVICEGATE_STORM_PORT")) {
        for (int p = 0; p < 3; ++p) {
            std::fprintf(stderr, "pass: %s (press Enter)\n", passes[p]);
            std::getchar();
            auto r = client.run(devices, {.port = std::atoi(port), .concurrency = 4, .resume = p == 2,
                                          .timeout = std::chrono::milliseconds(60000)});
            std::fprintf(stderr, "  %d accepted, %d refused, %d failed, %d resumed\n", r.accepted, r.refused, r.failed,
                         r.resumed);
        }
        std::filesystem::remove_all(dir);
        return 0;
    }
    // DEVICEGATE_STORM_ONLY=<configuration>[,<configuration>...]: only their rounds, no memory
    // run, and of the report only the paired blocks (when native without crlfile is among
    // them): for profiling one broker, or more rounds of a few configurations than a full run
    // affords.
    if (pinned()) pin_to(0, 1);  // before the client's threads start: they inherit it
    const char* only = std::getenv("DEVICEGATE_STORM_ONLY");
    std::vector<std::string> run = configs;
    if (only) {
        run.clear();
        std::istringstream in(only);
        for (std::string name; std::getline(in, name, ',');) {
            if (std::find(configs.begin(), configs.end(), name) == configs.end()) {
                std::fprintf(stderr, "DEVICEGATE_STORM_ONLY: no configuration \"%s\"\n", name.c_str());
                return 2;
            }
            if (std::find(run.begin(), run.end(), name) == run.end()) run.push_back(name);  // once each
        }
    }
    device_blocks blocks;
    for (auto& d : devices) {
        if (blocks.empty() || blocks.back().size() == block_size()) blocks.emplace_back();
        blocks.back().push_back(std::move(d));
    }
    results_map results;
    blocks_map block_results;
    for (int round = 0; round < rounds; ++round) {
        std::fprintf(stderr, "round %d of %d: %zu configurations, %zu blocks of up to %zu devices\n", round + 1, rounds,
                     run.size(), blocks.size(), block_size());
        try {
            if (!run_round(run, round, crl, blocks, client, results, block_results)) return 1;
        } catch (const std::exception& e) {  // the round's brokers and Redis are stopped by now
            std::fprintf(stderr, "round %d: %s\n", round + 1, e.what());
            return 1;
        }
    }
    if (only) {
        if (block_results.contains(std::string(native_floor) + "|" + passes[0])) {
            std::fputs(paired_section(block_results).c_str(), stdout);
        }
        std::filesystem::remove_all(dir);
        return 0;
    }
    std::map<std::string, memory_stats> memory;
    for (const auto& config : configs) {
        std::fprintf(stderr, "memory: %s with %d devices\n", config.c_str(), hold_n);
        // Fresh sessions each time: the devices' first connect to this broker.
        for (auto& d : hold) d.session.reset();
        if (!measure_memory(config, crl, hold, client, memory[config])) return 1;
    }
    const std::string md = report(results, block_results, memory, devices_n, hold_n, rounds, load_before, load_average());
    std::fputs(md.c_str(), stdout);
    if (out_file != "-") {
        std::filesystem::create_directories(std::filesystem::path(out_file).parent_path());
        std::ofstream(out_file + ".measured") << md;
        std::fprintf(stderr, "measurements written to %s.measured\n", out_file.c_str());
    }
    end_of_test(false);
    std::filesystem::remove_all(dir);
    return 0;
}

namespace {

/// A configuration against native without crlfile, block by block: each block's devices ran
/// on both brokers moments apart, so the machine's drift cancels in the ratio. Medians and
/// quartiles over every block of every round.
struct paired_ratios {
    double cpu = 0, cpu_q1 = 0, cpu_q3 = 0;  // broker CPU per connect, configuration / floor
    double cps = 0, cps_q1 = 0, cps_q3 = 0;  // connects/s, configuration / floor
    std::size_t pairs = 0;
};

paired_ratios paired(const blocks_map& blocks, const std::string& config, const char* pass) {
    const auto& mine = blocks.at(config + "|" + pass);
    const auto& floor = blocks.at(std::string(native_floor) + "|" + pass);
    std::vector<double> cpu, cps;
    for (std::size_t i = 0; i < std::min(mine.size(), floor.size()); ++i) {
        const auto& a = mine[i];
        const auto& f = floor[i];
        if (a.connects == 0 || f.connects == 0 || a.seconds <= 0 || f.seconds <= 0 || f.cpu_seconds <= 0) continue;
        cpu.push_back((a.cpu_seconds / a.connects) / (f.cpu_seconds / f.connects));
        cps.push_back((a.connects / a.seconds) / (f.connects / f.seconds));
    }
    return {quantile(cpu, 0.5), quantile(cpu, 0.25), quantile(cpu, 0.75),
            quantile(cps, 0.5), quantile(cps, 0.25), quantile(cps, 0.75), cpu.size()};
}

std::string paired_section(const blocks_map& blocks) {
    std::ostringstream md;
    md << "\n## Paired blocks (against native without crlfile)\n\n"
       << "The same ratios taken block by block: each block's devices ran on this configuration's broker and on "
       << "native without crlfile's moments apart, so a change in the shared machine's speed cancels out. Median "
       << "and quartiles over every block of every round.\n\n"
       << "| configuration | pass | broker CPU per connect, median (quartiles) | connects/s, median (quartiles) | "
       << "blocks |\n|---|---|---|---|---|\n";
    for (const char* pass : passes) {
        for (const auto& config : configs) {
            if (config == native_floor || !blocks.contains(config + "|" + pass)) continue;
            const auto r = paired(blocks, config, pass);
            char row[384];
            std::snprintf(row, sizeof row, "| %s | %s | %.3fx (%.3f-%.3f) | %.1f%% (%.1f-%.1f) | %zu |\n", config.c_str(),
                          pass, r.cpu, r.cpu_q1, r.cpu_q3, 100 * r.cps, 100 * r.cps_q1, 100 * r.cps_q3, r.pairs);
            md << row;
        }
    }
    return md.str();
}

std::string machine_section(const std::string& load_before, const std::string& load_after) {
    utsname un{};
    uname(&un);
    std::ostringstream md;
    md << "## Machine and versions\n\n"
       << "| | |\n|---|---|\n"
       << "| CPU | " << first_line("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'") << " |\n"
       << "| cores | " << std::thread::hardware_concurrency() << " (the broker is single-threaded; the load generator "
       << "runs beside it) |\n"
       << "| load average (1, 5, 15 min) | " << load_before << " before, " << load_after << " after |\n"
       << "| kernel | " << un.sysname << " " << un.release << " |\n"
       << "| mosquitto | " << first_line("mosquitto -h 2>&1 | head -1") << " |\n"
       << "| OpenSSL | " << OpenSSL_version(OPENSSL_VERSION) << " |\n"
       << "| Redis | " << first_line("redis-server --version") << " |\n\n";
    return md.str();
}

std::string throughput_section(const results_map& results, int devices_n, int rounds) {
    std::ostringstream md;
    md << "## Connect throughput, broker CPU and latency\n\n"
       << devices_n << " distinct devices, 32 connects in flight; each does TCP connect, TLS 1.3 handshake with its "
       << "own key, CONNECT, one QoS 1 PUBLISH, DISCONNECT. Latency is TCP connect start to CONNACK. Each round "
       << "starts every configuration's broker (and Redis) fresh and at once, and each pass alternates them in blocks "
       << "of " << block_size() << " devices, in a new shuffled order per block, with 100 ms between blocks, so that "
       << "a slower minute of the shared machine falls on all of them alike. Broker CPU is the run time of all the "
       << "broker's threads (/proc/PID/task/*/schedstat) over the pass, less its idle CPU while the other "
       << "configurations ran (below), divided by the connects; \"main thread\" is mosquitto's own thread, the rest "
       << "its other threads (DeviceGate's background threads; the idle thread). Capacity is 1 / broker CPU per "
       << "connect, relative to native without crlfile. Median over " << rounds << " rounds.\n\n"
       << "| configuration | pass | connects/s | vs floor | broker CPU ms/connect | main thread | capacity vs floor | "
       << "redis-server CPU ms/connect | p50 ms | p99 ms | resumed |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const char* pass : passes) {
        const auto& floor = results.at(std::string(native_floor) + "|" + pass);
        const double floor_cps = median_of(floor, &pass_stats::cps);
        const double floor_cpu = median_of(floor, &pass_stats::cpu_ms);
        for (const auto& config : configs) {
            const auto& v = results.at(config + "|" + pass);
            const double cps = median_of(v, &pass_stats::cps), cpu = median_of(v, &pass_stats::cpu_ms);
            char redis_cpu[32] = "-";
            if (config == devicegate_full || config == devicegate_before) {
                std::snprintf(redis_cpu, sizeof redis_cpu, "%.3f", median_of(v, &pass_stats::redis_cpu_ms));
            }
            char row[512];
            std::snprintf(row, sizeof row, "| %s | %s | %.0f | %.1f%% | %.3f | %.3f | %.1f%% | %s | %.2f | %.2f | %d |\n",
                          config.c_str(), pass, cps, 100.0 * cps / floor_cps, cpu,
                          median_of(v, &pass_stats::main_cpu_ms), 100.0 * floor_cpu / cpu, redis_cpu,
                          median_of(v, &pass_stats::p50), median_of(v, &pass_stats::p99), v.front().resumed);
            md << row;
        }
    }
    md << "\nIdle CPU of each broker (all threads, measured for 3 s before each round's passes; taken off its time "
       << "outside its own blocks), ms per second:";
    for (const auto& config : configs) {
        char cell[128];
        std::snprintf(cell, sizeof cell, " %s %.2f;", config.c_str(), devicegate::bench::median(idle_ms_per_s[config]));
        md << cell;
    }
    md << "\n\nPer round (connects/s / broker CPU ms per connect [1-minute load average]):\n\n"
       << "| configuration | pass | rounds |\n|---|---|---|\n";
    for (const auto& config : configs) {
        for (const char* pass : passes) {
            md << "| " << config << " | " << pass << " |";
            for (const auto& s : results.at(config + "|" + pass)) {
                char cell[64];
                std::snprintf(cell, sizeof cell, " %.0f / %.3f [%.1f]", s.cps, s.cpu_ms, s.load);
                md << cell;
            }
            md << " |\n";
        }
    }
    return md.str();
}

std::string memory_section(const std::map<std::string, memory_stats>& memory, int hold_n) {
    std::ostringstream md;
    md << "\n## Broker memory with " << hold_n << " devices connected\n\n"
       << "| configuration | RSS idle MiB | RSS connected MiB | per device KiB | connected vs floor | libcurl loaded |\n"
       << "|---|---|---|---|---|---|\n";
    const double floor = static_cast<double>(memory.at(native_floor).connected_kib);
    for (const auto& config : configs) {
        const auto& m = memory.at(config);
        char row[256];
        std::snprintf(row, sizeof row, "| %s | %.1f | %.1f | %.2f | %+.1f%% | %s |\n", config.c_str(),
                      static_cast<double>(m.idle_kib) / 1024.0, static_cast<double>(m.connected_kib) / 1024.0,
                      static_cast<double>(m.connected_kib - m.idle_kib) / hold_n,
                      100.0 * (static_cast<double>(m.connected_kib) / floor - 1), m.libcurl ? "yes" : "no");
        md << row;
    }
    return md.str();
}

std::string targets_section(const results_map& results, const blocks_map& blocks,
                            const std::map<std::string, memory_stats>& memory) {
    auto med = [&](const std::string& config, const char* pass, double pass_stats::*field) {
        return median_of(results.at(config + "|" + pass), field);
    };
    const double cpu_ratio = med(devicegate_full, passes[0], &pass_stats::cpu_ms) /
                             med(native_floor, passes[0], &pass_stats::cpu_ms);
    const double cps_first = med(devicegate_full, passes[0], &pass_stats::cps) / med(native_floor, passes[0], &pass_stats::cps);
    const double cps_resumed = med(devicegate_full, passes[2], &pass_stats::cps) / med(native_floor, passes[2], &pass_stats::cps);
    const auto first = paired(blocks, devicegate_full, passes[0]);
    const auto resumed = paired(blocks, devicegate_full, passes[2]);
    const double rss = static_cast<double>(memory.at(devicegate_full).connected_kib) /
                       static_cast<double>(memory.at(native_floor).connected_kib);
    auto verdict = [](bool met) { return met ? "met" : "missed"; };
    // No pair measured (no block of the floor): say so instead of comparing a 0.
    auto paired_cell = [&](const paired_ratios& r, double value, bool met, bool percent) {
        if (r.pairs == 0) return std::string("n/a | ");
        char cell[64];
        if (percent) {
            std::snprintf(cell, sizeof cell, "%.1f%%", value);
        } else {
            std::snprintf(cell, sizeof cell, "%.3fx", value);
        }
        return std::string(cell) + " | " + verdict(met);
    };
    char rest[256];
    std::string md =
        "\n## Targets (against native without crlfile, DeviceGate with Redis, jobs and the 100k CRL)\n\n"
        "| target | paired blocks (median) | | medians of the rounds | |\n|---|---|---|---|---|\n";
    md += "| broker CPU per first connect <= 1.05x | " + paired_cell(first, first.cpu, first.cpu <= 1.05, false);
    std::snprintf(rest, sizeof rest, " | %.3fx | %s |\n", cpu_ratio, verdict(cpu_ratio <= 1.05));
    md += rest;
    md += "| first connects/s >= 97% | " + paired_cell(first, 100 * first.cps, first.cps >= 0.97, true);
    std::snprintf(rest, sizeof rest, " | %.1f%% | %s |\n", 100 * cps_first, verdict(cps_first >= 0.97));
    md += rest;
    md += "| TLS-resumed reconnects/s >= 98% | " + paired_cell(resumed, 100 * resumed.cps, resumed.cps >= 0.98, true);
    std::snprintf(rest, sizeof rest, " | %.1f%% | %s |\n", 100 * cps_resumed, verdict(cps_resumed >= 0.98));
    md += rest;
    std::snprintf(rest, sizeof rest, "| RSS with the devices connected <= +5%% | | | %+.1f%% | %s |\n", 100 * (rss - 1),
                  verdict(rss <= 1.05));
    md += rest;
    return md;
}

/// The issue's form: one column per configuration, each value with its ratio to the floor.
std::string summary_section(const results_map& results, const std::map<std::string, memory_stats>& memory,
                            int hold_n) {
    auto med = [&](const std::string& config, const char* pass, double pass_stats::*field) {
        return median_of(results.at(config + "|" + pass), field);
    };
    std::ostringstream md;
    md << "\n## Summary (medians; in brackets: against native without crlfile)\n\n|";
    for (const auto& config : configs) md << " | " << config;
    md << " |\n|---|";
    for (std::size_t i = 0; i < configs.size(); ++i) md << "---|";
    auto row = [&](const char* label, auto value, const char* format, bool ratio_inverse) {
        md << "\n| " << label;
        const double floor = value(std::string(native_floor));
        for (const auto& config : configs) {
            const double v = value(config);
            char cell[96];
            std::snprintf(cell, sizeof cell, format, v, ratio_inverse ? v / floor : 100.0 * v / floor);
            md << " | " << cell;
        }
        md << " |";
    };
    row("first connects/s", [&](const std::string& c) { return med(c, passes[0], &pass_stats::cps); }, "%.0f (%.0f%%)",
        false);
    row("broker CPU per first connect", [&](const std::string& c) { return med(c, passes[0], &pass_stats::cpu_ms); },
        "%.3f ms (%.2fx)", true);
    row("broker CPU per reconnect (verify cache)",
        [&](const std::string& c) { return med(c, passes[1], &pass_stats::cpu_ms); }, "%.3f ms (%.2fx)", true);
    row("TLS-resumed connects/s", [&](const std::string& c) { return med(c, passes[2], &pass_stats::cps); },
        "%.0f (%.1f%%)", false);
    row("broker CPU per TLS-resumed connect", [&](const std::string& c) { return med(c, passes[2], &pass_stats::cpu_ms); },
        "%.3f ms (%.2fx)", true);
    const std::string rss_label = "RSS with " + std::to_string(hold_n) + " connected";
    row(rss_label.c_str(), [&](const std::string& c) { return static_cast<double>(memory.at(c).connected_kib) / 1024.0; },
        "%.1f MiB (%.3fx)", true);
    md << "\n";
    return md.str();
}

}  // namespace

std::string report(const results_map& results, const blocks_map& blocks, const std::map<std::string, memory_stats>& memory,
                   int devices_n, int hold_n, int rounds, const std::string& load_before, const std::string& load_after) {
    return "# DeviceGate performance\n\nWritten by `bench/run-all` (bench/connect_storm.cpp). Every number below "
           "comes from one run on one machine; the configurations ran interleaved, with the same PKI (P-256), the "
           "same devices and the same load generator, so compare the ratios rather than the absolute values.\n\n" +
           machine_section(load_before, load_after) + throughput_section(results, devices_n, rounds) +
           paired_section(blocks) + memory_section(memory, hold_n) + targets_section(results, blocks, memory) +
           summary_section(results, memory, hold_n);
}
