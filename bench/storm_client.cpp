#include "storm_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace devicegate::bench {

namespace {
using steady = std::chrono::steady_clock;

std::string mqtt_remaining_length(std::size_t n) {
    std::string out;
    do {
        auto byte = static_cast<unsigned char>(n % 128);
        n /= 128;
        if (n > 0) byte |= 0x80;
        out += static_cast<char>(byte);
    } while (n > 0);
    return out;
}

std::string utf8_field(const std::string& s) {
    return std::string{static_cast<char>(s.size() >> 8), static_cast<char>(s.size() & 0xff)} + s;
}

std::string connect_packet(const std::string& client_id) {
    std::string body = utf8_field("MQTT");
    body += '\x04';                   // protocol level 3.1.1
    body += '\x02';                   // clean session
    body += std::string{'\x00', '\x3c'};  // keep alive 60 s
    body += utf8_field(client_id);
    return "\x10" + mqtt_remaining_length(body.size()) + body;
}

std::string publish_packet(const std::string& topic, const std::string& payload) {
    std::string body = utf8_field(topic) + std::string{'\x00', '\x01'} + payload;  // packet id 1
    return "\x32" + mqtt_remaining_length(body.size()) + body;
}
}  // namespace

struct storm_client::conn {
    enum class state { tcp, tls, connack, puback, held, done };
    storm_device* device = nullptr;
    int fd = -1;
    SSL* ssl = nullptr;
    state st = state::tcp;
    steady::time_point started;
    std::string in;
    ~conn() {
        if (ssl) SSL_free(ssl);
        if (fd >= 0) ::close(fd);
    }
};

storm_client::storm_client(const std::string& ca_file) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!ctx_ || SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr) != 1) {
        throw std::runtime_error("cannot load " + ca_file);
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
}

storm_client::~storm_client() {
    release();
    SSL_CTX_free(ctx_);
    ::close(epoll_);
}

void storm_client::release() { held_.clear(); }

std::vector<storm_device> load_storm_devices(const std::string& dir, const std::vector<std::string>& ids) {
    std::vector<storm_device> out;
    for (const auto& id : ids) {
        storm_device d;
        d.id = id;
        bio_ptr c(BIO_new_file((dir + "/" + id + ".crt").c_str(), "r"));
        bio_ptr k(BIO_new_file((dir + "/" + id + ".key").c_str(), "r"));
        if (!c || !k) throw std::runtime_error("missing files for " + id);
        d.cert.reset(PEM_read_bio_X509(c.get(), nullptr, nullptr, nullptr));
        d.key.reset(PEM_read_bio_PrivateKey(k.get(), nullptr, nullptr, nullptr));
        if (!d.cert || !d.key) throw std::runtime_error("unreadable files for " + id);
        out.push_back(std::move(d));
    }
    return out;
}

storm_result storm_client::run(std::vector<storm_device>& devices, const storm_options& o) {
    storm_result r;
    std::size_t next = 0;
    int in_flight = 0;
    std::vector<std::unique_ptr<conn>> live;  // indexed by slot
    const auto begin = steady::now();

    auto set_events = [&](conn* c, std::uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = c;
        ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
    };
    auto finish = [&](conn* c, bool ok) {
        if (!ok) ++r.failed;
        ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
        c->st = conn::state::done;
        --in_flight;
    };
    auto start = [&](storm_device& d) {
        auto c = std::make_unique<conn>();
        c->device = &d;
        c->started = steady::now();
        c->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<uint16_t>(o.port));
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::connect(c->fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.ptr = c.get();
        ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c->fd, &ev);
        ++in_flight;
        live.push_back(std::move(c));
    };
    auto write_all = [](conn* c, const std::string& data) {
        return SSL_write(c->ssl, data.data(), static_cast<int>(data.size())) == static_cast<int>(data.size());
    };
    auto handshake = [&](conn* c) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc == 1) {
            if (SSL_session_reused(c->ssl)) ++r.resumed;
            c->st = conn::state::connack;
            if (!write_all(c, connect_packet(c->device->id))) return finish(c, false);
            set_events(c, EPOLLIN);
            return;
        }
        int err = SSL_get_error(c->ssl, rc);
        if (err == SSL_ERROR_WANT_READ) set_events(c, EPOLLIN);
        else if (err == SSL_ERROR_WANT_WRITE) set_events(c, EPOLLOUT);
        else finish(c, false);
    };
    auto on_event = [&](conn* c) {
        if (c->st == conn::state::tcp) {
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) return finish(c, false);
            c->ssl = SSL_new(ctx_);
            SSL_use_certificate(c->ssl, c->device->cert.get());
            SSL_use_PrivateKey(c->ssl, c->device->key.get());
            for (const auto& ca : c->device->chain) SSL_add1_chain_cert(c->ssl, ca.get());
            SSL_set1_host(c->ssl, "localhost");
            if (o.resume && c->device->session) SSL_set_session(c->ssl, c->device->session.get());
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            c->st = conn::state::tls;
            return handshake(c);
        }
        if (c->st == conn::state::tls) return handshake(c);
        char buf[4096];
        bool closed = false;  // a refusal's CONNACK often arrives together with the close
        for (;;) {
            int n = SSL_read(c->ssl, buf, sizeof buf);
            if (n > 0) {
                c->in.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            closed = SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ;
            break;
        }
        while (c->in.size() >= 2) {
            auto type = static_cast<unsigned char>(c->in[0]);
            auto len = static_cast<std::size_t>(static_cast<unsigned char>(c->in[1]));
            if (c->in.size() < 2 + len) break;
            if (type == 0x20 && c->st == conn::state::connack) {
                if (len != 2 || c->in[3] != 0) {
                    ++r.refused;
                    c->st = conn::state::done;
                    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
                    --in_flight;
                    return;
                }
                r.connack_ms.push_back(std::chrono::duration<double, std::milli>(steady::now() - c->started).count());
                ++r.accepted;
                if (o.hold) {
                    c->st = conn::state::held;
                    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
                    --in_flight;
                    return;
                }
                c->st = conn::state::puback;
                if (!write_all(c, publish_packet("devices/" + c->device->id + "/telemetry", R"({"t":21.5})"))) {
                    return finish(c, false);
                }
            } else if (type == 0x40 && c->st == conn::state::puback) {
                write_all(c, std::string{'\xe0', '\x00'});
                // A clean close_notify first: OpenSSL marks the session of a connection freed
                // without one as not resumable.
                SSL_shutdown(c->ssl);
                c->device->session.reset(SSL_get1_session(c->ssl), SSL_SESSION_free);
                c->st = conn::state::done;
                ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c->fd, nullptr);
                --in_flight;
                return;
            }
            c->in.erase(0, 2 + len);
        }
        if (closed) finish(c, false);
    };

    epoll_event events[256];
    while (next < devices.size() || in_flight > 0) {
        while (in_flight < o.concurrency && next < devices.size()) start(devices[next++]);
        int n = ::epoll_wait(epoll_, events, 256, 100);
        for (int i = 0; i < n; ++i) on_event(static_cast<conn*>(events[i].data.ptr));
        // Time out stragglers, and retire finished connections.
        const auto now = steady::now();
        for (auto& c : live) {
            if (c && (c->st == conn::state::tcp || c->st == conn::state::tls || c->st == conn::state::connack ||
                      c->st == conn::state::puback) &&
                now - c->started > o.timeout) {
                finish(c.get(), false);
            }
        }
        for (auto& c : live) {
            if (c && c->st == conn::state::held) held_.push_back(std::move(c));
            else if (c && c->st == conn::state::done) c.reset();
        }
        std::erase(live, nullptr);
    }
    r.seconds = std::chrono::duration<double>(steady::now() - begin).count();
    return r;
}

}  // namespace devicegate::bench
