#pragma once
// A real redis-server for unit tests: its own process on a loopback port, its data in a
// temporary directory, stopped (SIGKILL) when the object goes. redis-server cannot bind
// port 0 and report the port (--port 0 disables TCP), so a port is picked from the kernel's
// ephemeral range and start() retries with another one when redis-server exits at once
// (the port was taken meanwhile). Needs nothing from CI but the redis-server binary.
#include "devicegate/redis.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace devicegate::test {

/// Polls `done` until it holds or `timeout` passes (for background threads' effects).
template <class F>
bool eventually(F&& done, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    for (auto deadline = std::chrono::steady_clock::now() + timeout; !done();) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

class redis_process {
public:
    /// `bind`: the address redis-server listens on (127.0.0.1, or ::1 for IPv6).
    explicit redis_process(std::string bind = "127.0.0.1") : bind_(std::move(bind)) {
        std::random_device rd;
        dir_ = std::filesystem::temp_directory_path() / ("devicegate-unit-redis-" + std::to_string(rd()));
        std::filesystem::create_directories(dir_);
        start();
    }
    ~redis_process() {
        kill();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    redis_process(const redis_process&) = delete;
    redis_process& operator=(const redis_process&) = delete;

    /// Starts redis-server (again, on the same port if it ran before); throws if it does not
    /// answer PING.
    void start() {
        for (int attempt = 0; attempt < 5; ++attempt) {
            if (port_ == 0 || attempt > 0) port_ = unused_port();
            if (launch()) return;
        }
        throw std::runtime_error("redis-server did not start (is it installed?)");
    }
    /// SIGKILL, like a crash.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    /// SIGSTOP / SIGCONT: a hung server (connections are accepted by the kernel, nothing answers).
    void freeze(bool frozen) const {
        if (pid_ > 0) ::kill(pid_, frozen ? SIGSTOP : SIGCONT);
    }

    int port() const noexcept { return port_; }
    std::string url() const { return "redis://" + redis_endpoint{bind_, port_}.describe(); }
    redis_options options() const {
        redis_options o;
        o.host = bind_;
        o.port = port_;
        o.connect_timeout = std::chrono::milliseconds(500);
        o.command_timeout = std::chrono::milliseconds(1000);
        return o;
    }
    /// One command on a fresh connection.
    redis_reply_ptr command(const std::vector<std::string>& argv) const {
        redis_connection c(options());
        return c.command(argv);
    }

    /// A loopback port free right now (the kernel's pick); another process may take it.
    static int unused_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
        ::close(fd);
        if (!ok) throw std::runtime_error("no free loopback port");
        return ntohs(addr.sin_port);
    }

private:
    /// true once it answers PING; false if it exited (port taken).
    bool launch() {
        const std::string port = std::to_string(port_), dir = dir_.string(), log = (dir_ / "redis.log").string();
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", bind_.c_str(), "--dir", dir.c_str(),
                     "--save", "", "--appendonly", "no", "--logfile", log.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
             std::chrono::steady_clock::now() < deadline;) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return false;
            }
            try {
                if (reply_string(command({"PING"}).get(), "PING") == "PONG") return true;
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        kill();
        return false;
    }

    std::string bind_;
    std::filesystem::path dir_;
    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace devicegate::test
