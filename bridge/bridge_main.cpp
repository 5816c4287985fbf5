// devicegate-bridge [-c FILE] [--check]: the enrollment API (see docs/enrollment.md).
#include "embedded_ca.hpp"
#include "http_api.hpp"
#include "signer_factory.hpp"

#include "devicegate/crl_set.hpp"
#include "devicegate/daemon.hpp"
#include "devicegate/listen_socket.hpp"
#include "devicegate/pki.hpp"

#include <csignal>
#include <ctime>
#include <iostream>
#include <optional>
#include <thread>

namespace {

constexpr const char* usage = R"(usage: devicegate-bridge [-c FILE] [--check]
  -c FILE   settings, one "key value" per line (bridge/devicegate-bridge.conf.example);
            every key can also come from the environment as DEVICEGATE_BRIDGE_<KEY> (which wins)
  --check   validate the settings, load the CA material, print the settings (no secrets), exit
)";

/// Binds host:port (the part after the last colon is the port); false if it cannot, also when
/// another process listens there (no SO_REUSEPORT: listen_socket.hpp).
bool bind_listen(httplib::Server& server, const std::string& listen) {
    server.set_socket_options(devicegate::exclusive_listen_options);
    const auto colon = listen.rfind(':');
    return server.bind_to_port(listen.substr(0, colon), std::stoi(listen.substr(colon + 1)));
}

/// Serves the API (and the plain-HTTP CRL, if configured) until SIGINT/SIGTERM; exit code.
int serve(const devicegate::bridge::bridge_config& config, devicegate::bridge::bridge_service& service,
          httplib::SSLServer& server, const sigset_t& signals, const devicegate::logger& log) {
    using namespace devicegate::bridge;
    install_routes(server, service, log);
    server.new_task_queue = [threads = config.threads] { return new httplib::ThreadPool(threads); };
    if (!bind_listen(server, config.listen)) {
        std::cerr << "devicegate-bridge: listen: cannot bind " << config.listen << "\n";
        return 1;
    }
    httplib::Server crl_server;
    std::thread crl_thread;
    if (!config.crl_listen.empty()) {
        install_crl_route(crl_server, service);
        if (!bind_listen(crl_server, config.crl_listen)) {
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
        for (int i = 0; i < 200 && !server.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        server.stop();
        crl_server.stop();
    });
    log.notice("devicegate-bridge: listening on https://" + config.listen + " " + config.describe());
    server.listen_after_bind();
    crl_server.stop();
    if (crl_thread.joinable()) crl_thread.join();
    if (stopper.joinable()) {
        pthread_kill(stopper.native_handle(), SIGTERM);
        stopper.join();
    }
    return 0;
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
        config = parse_bridge_config(file.empty() ? "" : read_file(file, 1 << 20), environment_variables());
        trust = tenant_trust::load(config.sub_ca_file, config.ica_file, config.root_file);
        // An expired (or not yet valid) chain would only sign certificates that no broker
        // accepts (notAfter is clamped to the Sub-CA's): refuse to start, naming the file.
        const std::time_t now = std::time(nullptr);
        check_ca_validity(trust->certificate(ca_role::sub_ca), config.sub_ca_file, now, std::chrono::seconds(0));
        check_ca_validity(trust->certificate(ca_role::ica), config.ica_file, now, std::chrono::seconds(0));
        check_ca_validity(trust->certificate(ca_role::root), config.root_file, now, std::chrono::seconds(0));
        ca = make_signer(config);
        // The CRLs renewal checks verify against the chain now (the start loads them again).
        if (check) {
            for (const auto& f : config.crl.files) load_crl_file(f, *trust);
        }
    } catch (const std::exception& e) {
        std::cerr << "devicegate-bridge: configuration " << (file.empty() ? "" : "(" + file + ") ") << "error: " << e.what()
                  << "\n";
        return 1;
    }
    if (check) {
        std::cout << "devicegate-bridge: configuration ok: " << config.describe() << "\n";
        return 0;
    }
    const logger log = stderr_logger(log_threshold(config.log_level));
    try {
        check_ca_validity(trust->certificate(ca_role::sub_ca), config.sub_ca_file, std::time(nullptr),
                          required_ca_validity_left(config.cert_validity));
    } catch (const ca_validity_error& e) {
        log.warning(std::string("devicegate-bridge: ") + e.what() +
                    "; enrollments and renewals are refused (503 ca_expired) until it is replaced");
    }
    const sigset_t signals = block_stop_signals();  // every thread started below inherits it
    std::optional<bridge_service> service;
    std::unique_ptr<httplib::SSLServer> server;
    try {
        service.emplace(config, trust, ca, log);  // loads the CRLs renewal checks: a bad file stops the start
        server = make_https_server(config, trust->certificate(ca_role::sub_ca));
    } catch (const std::exception& e) {
        std::cerr << "devicegate-bridge: " << e.what() << "\n";
        return 1;
    }
    return serve(config, *service, *server, signals, log);
}
