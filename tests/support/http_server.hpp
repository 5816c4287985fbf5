#pragma once
// A minimal HTTP/1.1 server on a free loopback port for tests: routes set by the test (status,
// body, ETag), conditional GETs answered with 304, every request recorded. One connection at
// a time, closed after each response.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace devicegate::test {

class http_server {
public:
    struct route {
        int status = 200;
        std::string body;
        std::string etag;  // "" = no ETag
        std::string content_type = "application/pkix-crl";
    };
    struct request {
        std::string method, path, if_none_match;
    };

    http_server() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        ::listen(fd_, 16);
        thread_ = std::thread([this] { serve(); });
    }
    ~http_server() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
    void set(const std::string& path, route r) {
        std::lock_guard lock(mutex_);
        routes_[path] = std::move(r);
    }
    std::vector<request> requests() {
        std::lock_guard lock(mutex_);
        return requests_;
    }
    std::size_t count(const std::string& path) {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& r : requests_) n += r.path == path;
        return n;
    }

private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            handle(c);
            ::close(c);
        }
    }
    void handle(int c) {
        std::string in;
        char buf[4096];
        while (in.find("\r\n\r\n") == std::string::npos) {
            pollfd p{c, POLLIN, 0};
            if (::poll(&p, 1, 2000) <= 0) return;
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) return;
            in.append(buf, static_cast<std::size_t>(n));
        }
        request req;
        req.method = in.substr(0, in.find(' '));
        auto path_start = in.find(' ') + 1;
        req.path = in.substr(path_start, in.find(' ', path_start) - path_start);
        auto inm = in.find("If-None-Match: ");
        if (inm != std::string::npos) req.if_none_match = in.substr(inm + 15, in.find("\r\n", inm) - inm - 15);
        route r;
        {
            std::lock_guard lock(mutex_);
            requests_.push_back(req);
            auto it = routes_.find(req.path);
            if (it == routes_.end()) r = route{404, "not found", "", "text/plain"};
            else r = it->second;
        }
        std::string head;
        if (!r.etag.empty() && req.if_none_match == r.etag) {
            head = "HTTP/1.1 304 Not Modified\r\nETag: " + r.etag + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            ::send(c, head.data(), head.size(), MSG_NOSIGNAL);
            return;
        }
        head = "HTTP/1.1 " + std::to_string(r.status) + " X\r\nContent-Type: " + r.content_type +
               "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\nConnection: close\r\n";
        if (!r.etag.empty()) head += "ETag: " + r.etag + "\r\n";
        head += "\r\n";
        std::string out = head + r.body;
        ::send(c, out.data(), out.size(), MSG_NOSIGNAL);
    }

    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::map<std::string, route> routes_;
    std::vector<request> requests_;
    std::thread thread_;
};

}  // namespace devicegate::test
