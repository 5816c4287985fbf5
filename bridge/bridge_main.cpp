// devicegate-bridge [-c FILE] [--check]: the enrollment API (see docs/enrollment.md).
#include "embedded_ca.hpp"
#include "http_api.hpp"
#include "signer_factory.hpp"

#include "devicegate/pki.hpp"

#include <csignal>
#include <ctime>
#include <iostream>
#include <mutex>
#include <thread>

extern char** environ;

namespace {

constexpr const char* usage = R"(usage: devicegate-bridge [-c FILE] [--check]
  -c FILE   settings, one "key value" per line (bridge/devicegate-bridge.conf.example);
            every key can also come from the environment as DEVICEGATE_BRIDGE_<KEY> (which wins)
  --check   validate the settings, load the CA material, print the settings (no secrets), exit
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

devicegate::logger make_logger(const std::string& level_name) {
    using devicegate::log_level;
    const log_level min = level_name == "warning" ? log_level::warning : level_name == "notice" ? log_level::notice : log_level::info;
    static std::mutex mutex;
    return devicegate::logger([min](log_level level, std::string_view line) {
        if (level < min) return;
        static const char* names[] = {"debug", "info", "notice", "warning", "error"};
        std::time_t t = std::time(nullptr);
        std::tm tm{};
        gmtime_r(&t, &tm);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        std::lock_guard lock(mutex);
        std::cerr << stamp << " " << names[static_cast<int>(level)] << " " << line << "\n" << std::flush;
    });
}

}  // namespace

int main(int argc, char** argv) {
    using namespace devicegate;
    using namespace devicegate::bridge;
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
    bridge_config config;
    std::shared_ptr<const tenant_trust> trust;
    std::shared_ptr<signer> ca;
    try {
        config = parse_bridge_config(file.empty() ? "" : read_file(file, 1 << 20), environment());
        trust = tenant_trust::load(config.sub_ca_file, config.ica_file, config.root_file);
        ca = make_signer(config);
    } catch (const std::exception& e) {
        std::cerr << "devicegate-bridge: configuration " << (file.empty() ? "" : "(" + file + ") ") << "error: " << e.what()
                  << "\n";
        return 1;
    }
    if (check) {
        std::cout << "devicegate-bridge: configuration ok: " << config.describe() << "\n";
        return 0;
    }
    logger log = make_logger(config.log_level);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // every thread started below inherits it

    bridge_service service(config, trust, ca, log);
    std::unique_ptr<httplib::SSLServer> server;
    try {
        server = make_https_server(config, trust->certificate(ca_role::sub_ca));
    } catch (const std::exception& e) {
        std::cerr << "devicegate-bridge: " << e.what() << "\n";
        return 1;
    }
    install_routes(*server, service, log);
    server->new_task_queue = [threads = config.threads] { return new httplib::ThreadPool(threads); };
    const auto colon = config.listen.rfind(':');
    const std::string host = config.listen.substr(0, colon);
    const int port = std::stoi(config.listen.substr(colon + 1));
    if (!server->bind_to_port(host, port)) {
        std::cerr << "devicegate-bridge: listen: cannot bind " << config.listen << "\n";
        return 1;
    }
    httplib::Server crl_server;
    std::thread crl_thread;
    if (!config.crl_listen.empty()) {
        install_crl_route(crl_server, service);
        const auto c = config.crl_listen.rfind(':');
        if (!crl_server.bind_to_port(config.crl_listen.substr(0, c), std::stoi(config.crl_listen.substr(c + 1)))) {
            std::cerr << "devicegate-bridge: crl_listen: cannot bind " << config.crl_listen << "\n";
            return 1;
        }
        crl_thread = std::thread([&] { crl_server.listen_after_bind(); });
    }
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        log.notice("devicegate-bridge: signal " + std::to_string(sig) + ", stopping");
        // httplib's stop() before its listener runs is lost (is_running_ is still false).
        for (int i = 0; i < 200 && !server->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        server->stop();
        crl_server.stop();
    });
    log.notice("devicegate-bridge: listening on https://" + config.listen + " " + config.describe());
    server->listen_after_bind();
    crl_server.stop();
    if (crl_thread.joinable()) crl_thread.join();
    if (stopper.joinable()) {
        pthread_kill(stopper.native_handle(), SIGTERM);
        stopper.join();
    }
    return 0;
}
