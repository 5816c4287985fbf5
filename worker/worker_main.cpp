// devicegate-worker [-c FILE] [--check]: see README.md "Registration worker".
#include "worker.hpp"

#include "devicegate/pki.hpp"

#include <httplib.h>

#include <csignal>
#include <ctime>
#include <iostream>
#include <mutex>
#include <thread>

extern char** environ;

namespace {

constexpr const char* usage = R"(usage: devicegate-worker [-c FILE] [--check]
  -c FILE   settings, one "key value" per line (config/devicegate-worker.conf.example);
            every key can also come from the environment as DEVICEGATE_<KEY> (which wins)
  --check   validate the settings, print them (without secrets) and exit
)";

std::map<std::string, std::string> environment() {
    std::map<std::string, std::string> out;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string kv = *e;
        auto eq = kv.find('=');
        if (eq != std::string::npos) out[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    return out;
}

devicegate::log_level threshold(const std::string& name) {
    if (name == "warning") return devicegate::log_level::warning;
    if (name == "notice") return devicegate::log_level::notice;
    return devicegate::log_level::info;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace devicegate;
    using namespace devicegate::worker;
    std::string file;
    bool check = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "-c" && i + 1 < argc) file = argv[++i];
        else if (a == "--check") check = true;
        else {
            std::cerr << usage;
            return a == "-h" || a == "--help" ? 0 : 1;
        }
    }
    worker_config config;
    try {
        config = parse_worker_config(file.empty() ? "" : read_file(file, 1 << 20), environment());
    } catch (const std::exception& e) {
        std::cerr << "devicegate-worker: configuration " << (file.empty() ? "" : "(" + file + ") ") << "error: "
                  << e.what() << "\n";
        return 1;
    }
    if (check) {
        std::cout << "devicegate-worker: configuration ok: " << config.describe() << "\n";
        return 0;
    }

    std::mutex log_mutex;
    const log_level min_level = threshold(config.log_level);
    logger log([&](log_level level, std::string_view line) {
        if (level < min_level) return;
        static const char* names[] = {"debug", "info", "notice", "warning", "error"};
        std::time_t t = std::time(nullptr);
        std::tm tm{};
        gmtime_r(&t, &tm);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        std::lock_guard lock(log_mutex);
        std::cerr << stamp << " " << names[static_cast<int>(level)] << " " << line << "\n" << std::flush;
    });

    // A shell starts background jobs with SIGINT ignored, and an ignored signal never reaches
    // sigwait: take the default disposition back first.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // every thread inherits it; one waits below
    std::signal(SIGPIPE, SIG_IGN);

    worker_metrics metrics;
    httplib::Server metrics_server;
    std::thread metrics_thread;
    if (config.metrics_listen != "off") {
        const auto colon = config.metrics_listen.rfind(':');
        const std::string host = config.metrics_listen.substr(0, colon);
        const int port = std::stoi(config.metrics_listen.substr(colon + 1));
        metrics_server.new_task_queue = [] { return new httplib::ThreadPool(2); };
        metrics_server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
            res.set_content(metrics.render(), "text/plain; version=0.0.4");
        });
        if (!metrics_server.bind_to_port(host, port)) {
            log.error("devicegate-worker: cannot listen on metrics_listen " + config.metrics_listen +
                      " (in use? set metrics_listen to another host:port, or off)");
            return 1;
        }
        metrics_thread = std::thread([&] { metrics_server.listen_after_bind(); });
    }

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
               std::to_string(metrics.jobs_dead[0] + metrics.jobs_dead[1] + metrics.jobs_dead[2] + metrics.jobs_dead[3]) +
               ", handed back " + std::to_string(metrics.jobs_requeued.load()) + ")");
    signal_thread.join();
    if (metrics_thread.joinable()) {
        // stop() only acts on a running server: give a just-started one a moment to be so.
        for (int i = 0; i < 1000 && !metrics_server.is_running(); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        metrics_server.stop();
        metrics_thread.join();
    }
    return 0;
}
