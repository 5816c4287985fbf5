#include "devicegate/daemon.hpp"

#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>

extern char** environ;

namespace devicegate {

std::map<std::string, std::string> environment_variables() {
    std::map<std::string, std::string> out;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string kv = *e;
        auto eq = kv.find('=');
        if (eq != std::string::npos) out[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    return out;
}

log_level log_threshold(const std::string& name) {
    if (name == "warning") return log_level::warning;
    if (name == "notice") return log_level::notice;
    return log_level::info;
}

logger stderr_logger(log_level min_level) {
    auto mutex = std::make_shared<std::mutex>();
    return logger([mutex, min_level](log_level l, std::string_view line) {
        if (l < min_level) return;
        static const char* names[] = {"debug", "info", "notice", "warning", "error"};
        const std::string stamp = iso_utc(std::time(nullptr));
        std::lock_guard lock(*mutex);
        std::cerr << stamp << " " << names[static_cast<int>(l)] << " " << line << "\n" << std::flush;
    });
}

sigset_t block_stop_signals() {
    // A shell starts background jobs with SIGINT ignored, and an ignored signal never reaches
    // sigwait: take the default disposition back first.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
    return signals;
}

}  // namespace devicegate
