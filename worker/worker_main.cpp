// devicegate-worker [-c FILE] [--check]: see README.md "Registration worker".
#include "worker.hpp"

#include "devicegate/daemon.hpp"
#include "devicegate/listen_socket.hpp"
#include "devicegate/pki.hpp"

#include <httplib.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr const char* usage = R"(usage: devicegate-worker [-c FILE] [--check]
  -c FILE   settings, one "key value" per line (config/devicegate-worker.conf.example);
            every key can also come from the environment as DEVICEGATE_<KEY> (which wins)
  --check   validate the settings, print them (without secrets); if ThingsBoard / hawkBit
            answer, also check the login and that the configured device profile, customer and
            target type exist; exit 1 if anything is wrong (an unreachable target is only noted)
)";

/// One target's part of --check: "" when fine or unreachable (noted on stdout), else the problem.
std::string check_names(const char* what, const std::function<std::vector<std::pair<std::string, std::string>>()>& names) {
    using devicegate::worker::target_failure;
    try {
        std::string problems;
        for (const auto& [setting, missing] : names()) {
            if (!missing.empty()) problems += (problems.empty() ? "" : "; ") + missing + " (" + setting + ")";
        }
        if (problems.empty()) std::cout << "devicegate-worker: " << what << ": login and configured names ok\n";
        return problems;
    } catch (const target_failure& f) {
        if (f.paused) return f.what();
        if (f.status == 0 || f.retryable) {
            std::cout << "devicegate-worker: " << what << " not checked (" << f.what()
                      << "); the worker looks the configured names up when it first needs them\n";
            return "";
        }
        return f.what();
    }
}

/// --check against the live targets (short timeouts): the login, the device profile, the
/// customer and the target type. Returns the problems found ("" = none).
std::string check_targets(const devicegate::worker::worker_config& config) {
    using namespace devicegate::worker;
    worker_metrics metrics;
    const auto timeout = std::min(config.http_timeout, std::chrono::milliseconds(3000));
    login_gate tb_gate(target::thingsboard, config.auth_retry_initial, config.auth_retry_max, metrics);
    login_gate hb_gate(target::hawkbit, config.auth_retry_initial, config.auth_retry_max, metrics);
    setup_lookup tb_setup(target::thingsboard, config.auth_retry_initial, config.auth_retry_max, metrics);
    setup_lookup hb_setup(target::hawkbit, config.auth_retry_initial, config.auth_retry_max, metrics);
    thingsboard_session session(config.thingsboard, timeout, metrics, tb_gate);
    thingsboard_client tb(config.thingsboard, timeout, session, metrics, tb_setup);
    hawkbit_client hb(config.hawkbit, timeout, metrics, hb_gate, hb_setup);
    const auto& t = config.thingsboard;
    std::string problems = check_names("thingsboard", [&] {
        std::vector<std::pair<std::string, std::string>> out;
        // Any call checks the login; the profile lookup is one (of "default" when none is set).
        const std::string profile = tb.find_device_profile(t.device_profile.empty() ? "default" : t.device_profile);
        out.emplace_back("thingsboard_device_profile", !t.device_profile.empty() && profile.empty()
                                                           ? "device profile '" + t.device_profile + "' not found in ThingsBoard" : "");
        out.emplace_back("thingsboard_customer", !t.customer.empty() && tb.find_customer(t.customer).empty()
                                                     ? "customer '" + t.customer + "' not found in ThingsBoard" : "");
        return out;
    });
    const std::string hawkbit = check_names("hawkbit", [&] {
        const auto& type = config.hawkbit.target_type;
        // Any authenticated call checks the login; the type lookup is one when a type is set.
        const std::string found = hb.find_target_type(type.empty() ? devicegate::worker::revoked_tag : type);
        return std::vector<std::pair<std::string, std::string>>{
            {"hawkbit_target_type", !type.empty() && found.empty() ? "target type '" + type + "' not found in hawkBit" : ""}};
    });
    if (!hawkbit.empty()) problems += (problems.empty() ? "" : "; ") + hawkbit;
    return problems;
}


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
        server_.set_socket_options(devicegate::exclusive_listen_options);  // a port in use fails
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
        const std::string problems = check_targets(config);
        if (problems.empty()) return 0;
        std::cerr << "devicegate-worker: check failed: " << problems << "\n";
        return 1;
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
