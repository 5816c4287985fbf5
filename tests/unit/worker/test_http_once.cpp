// Issue 14 item 9: libcurl re-sends a request on a new connection when a reused keep-alive
// connection dies before any answer (lib/transfer.c Curl_retry_request). A server that closes a
// kept-alive connection at the moment a POST arrives sees that POST twice; with
// http_get_options::fresh_connection (what the worker uses for the non-idempotent Rule Engine
// message) it sees it once.
#include "devicegate/http.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <vector>
#include <string>
#include <thread>

namespace {

/// Answers the first request of each connection with 200 and keeps it open; closes the
/// connection without a byte when a second request arrives on it (as a server whose idle
/// timeout fires just then).
class closing_server {
public:
    closing_server() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 16) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~closing_server() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        thread_.join();
        {
            std::lock_guard lock(mutex_);
            for (int c : open_) ::shutdown(c, SHUT_RDWR);
        }
        for (auto& t : connections_) t.join();
        ::close(fd_);
    }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    int seen(const std::string& path) {
        std::lock_guard lock(mutex_);
        return seen_[path];
    }

private:
    void serve() {
        while (!stop_) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            std::lock_guard lock(mutex_);
            open_.insert(c);
            connections_.emplace_back([this, c] { converse(c); });
        }
    }
    void converse(int c) {
        {
            for (int n = 0;; ++n) {
                std::string request = read_request(c);
                if (request.empty()) break;
                const auto sp = request.find(' ');
                {
                    std::lock_guard lock(mutex_);
                    ++seen_[request.substr(sp + 1, request.find(' ', sp + 1) - sp - 1)];
                }
                if (n > 0) break;  // the idle timeout fired: close without answering
                const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}";
                if (::send(c, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) break;
            }
        }
        std::lock_guard lock(mutex_);
        open_.erase(c);
        ::close(c);
    }
    static std::string read_request(int c) {
        std::string in;
        char buf[4096];
        for (;;) {
            const auto end = in.find("\r\n\r\n");
            if (end != std::string::npos) {
                std::size_t length = 0;
                if (auto cl = in.find("Content-Length: "); cl != std::string::npos) length = std::stoul(in.substr(cl + 16));
                if (in.size() >= end + 4 + length) return in;
            }
            const auto got = ::recv(c, buf, sizeof buf, 0);
            if (got <= 0) return "";
            in.append(buf, static_cast<std::size_t>(got));
        }
    }

    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::vector<std::thread> connections_;
    std::set<int> open_;
    std::mutex mutex_;
    std::map<std::string, int> seen_;
};

}  // namespace

TEST_CASE("A POST on a fresh connection is never re-sent by libcurl; on a reused one it can be",
          "[worker][http]") {
    closing_server server;
    devicegate::http_client http;
    devicegate::http_get_options o;
    o.timeout = std::chrono::milliseconds(3000);
    REQUIRE(http.get(server.url("/warm"), o).status == 200);  // a kept-alive connection now exists

    SECTION("reused connection: the same POST reaches the server twice (the hazard)") {
        auto r = http.post(server.url("/reused"), "{}", "application/json", o);
        CHECK(r.status == 200);  // libcurl hid the failure by sending it again
        CHECK(server.seen("/reused") == 2);
    }
    SECTION("fresh connection: once") {
        o.fresh_connection = true;
        auto r = http.post(server.url("/fresh"), "{}", "application/json", o);
        CHECK(r.status == 200);
        CHECK(server.seen("/fresh") == 1);
    }
}
