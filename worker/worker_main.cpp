// devicegate-worker [-c FILE] [--check]: see README.md "Registration worker".
#include "worker.hpp"

#include "devicegate/daemon.hpp"
#include "devicegate/pki.hpp"

#include <httplib.h>

#include <csignal>
#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace {

constexpr const char* usage = R"(usage: devicegate-worker [-c FILE] [--check]
  -c FILE   settings, one "key value" per line (config/devicegate-worker.conf.example);
            every key can also come from the environment as DEVICEGATE_<KEY> (which wins)
  --check   validate the settings, print them (without secrets) and exit
)";

/// The /metrics endpoint on its own thread (metrics_listen; "off": none).
class metrics_endpoint {
public:
    explicit metrics_endpoint(devicegate::worker::worker_metrics& metrics) : metrics_(metrics) {}
    ~metrics_endpoint() { stop(); }
    /// false if it cannot listen (logged).
    bool start(const std::string& listen, const devicegate::logger& log) {
        if (listen == "off") return true;
        const auto colon = listen.rfind(':');
        const std::string host = listen.substr(0, colon);
        const int port = std::stoi(listen.substr(colon + 1));
        server_.new_task_queue = [] { return new httplib::ThreadPool(2); };
        server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics_.render(), "text/plain; version=0.0.4");
        });
        if (!server_.bind_to_port(host, port)) {
            log.error("devicegate-worker: cannot listen on metrics_listen " + listen +
                      " (in use? set metrics_listen to another host:port, or off)");
            return false;
        }
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        return true;
    }
    void stop() {
        if (!thread_.joinable()) return;
        // stop() only acts on a running server: give a just-started one a moment to be so.
        for (int i = 0; i < 1000 && !server_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        server_.stop();
        thread_.join();
    }

private:
    devicegate::worker::worker_metrics& metrics_;
    httplib::Server server_;
    std::thread thread_;
};

struct command_line {
    std::string file;
    bool check = false;
};

/// nullopt: print the usage and exit with `exit_code`.
std::optional<command_line> parse_command_line(int argc, char** argv, int& exit_code) {
    command_line out;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-c" && i + 1 < argc) out.file = argv[++i];
        else if (a == "--check") out.check = true;
        else {
            exit_code = a == "-h" || a == "--help" ? 0 : 1;
            return std::nullopt;
        }
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace devicegate;
    using namespace devicegate::worker;
    int usage_exit = 1;
    auto args = parse_command_line(argc, argv, usage_exit);
    if (!args) {
        std::cerr << usage;
        return usage_exit;
    }
    worker_config config;
    try {
        config = parse_worker_config(args->file.empty() ? "" : read_file(args->file, 1 << 20), environment_variables());
    } catch (const std::exception& e) {
        std::cerr << "devicegate-worker: configuration " << (args->file.empty() ? "" : "(" + args->file + ") ")
                  << "error: " << e.what() << "\n";
        return 1;
    }
    if (args->check) {
        std::cout << "devicegate-worker: configuration ok: " << config.describe() << "\n";
        return 0;
    }
    const logger log = stderr_logger(log_threshold(config.log_level));
    sigset_t signals = block_stop_signals();
    worker_metrics metrics;
    metrics_endpoint endpoint(metrics);
    if (!endpoint.start(config.metrics_listen, log)) return 1;

    registration_worker worker(config, metrics, log);
    std::thread signal_thread([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        log.notice(std::string("devicegate-worker: ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                   ": finishing in-flight jobs, handing back the ones waiting to retry");
        worker.stop();
    });
    log.notice("devicegate-worker: starting: " + config.describe());
    worker.run();
    log.notice("devicegate-worker: stopped (done " + std::to_string(metrics.jobs_done.load()) + ", dead-lettered " +
               std::to_string(metrics.dead_total()) +
               ", handed back " + std::to_string(metrics.jobs_requeued.load()) + ")");
    signal_thread.join();
    endpoint.stop();
    return 0;
}
