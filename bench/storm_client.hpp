#pragma once
// A lean MQTT 3.1.1-over-TLS load generator: one thread, epoll, non-blocking OpenSSL. Each
// device does TCP connect -> TLS handshake (its own key and certificate, optionally resuming
// its previous TLS session) -> CONNECT -> CONNACK -> one QoS 1 PUBLISH -> PUBACK ->
// DISCONNECT, with a bounded number in flight. libmosquitto needs a thread per client, which
// would measure the generator instead of the broker.
#include "devicegate/ossl.hpp"

#include <openssl/ssl.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace devicegate::bench {

struct storm_device {
    std::string id;
    x509_ptr cert;
    evp_pkey_ptr key;
    std::vector<x509_ptr> chain;           // intermediates sent after the leaf (may be empty)
    std::shared_ptr<SSL_SESSION> session;  // from the last connect, for resumption
};

struct storm_result {
    int accepted = 0;
    int refused = 0;   // CONNACK with a non-zero code
    int failed = 0;    // TCP/TLS errors, timeouts
    int resumed = 0;   // TLS handshakes that resumed a session
    double seconds = 0;
    std::vector<double> connack_ms;  // TCP connect start -> CONNACK
    double connects_per_second() const { return seconds > 0 ? accepted / seconds : 0; }
};

struct storm_options {
    int port = 8883;
    int concurrency = 32;
    bool resume = false;   // offer each device's previous session
    bool hold = false;     // stay connected after CONNACK (for memory measurements)
    std::chrono::milliseconds timeout{10000};
};

class storm_client {
public:
    /// `ca_file`: the Root that the broker's certificate chains to.
    explicit storm_client(const std::string& ca_file);
    ~storm_client();
    /// Runs every device once. With hold, connections stay open until release().
    storm_result run(std::vector<storm_device>& devices, const storm_options& options);
    void release();

private:
    struct conn;
    SSL_CTX* ctx_;
    std::vector<std::unique_ptr<conn>> held_;
    int epoll_ = -1;
};

/// Loads <dir>/<id>.crt and .key for each id.
std::vector<storm_device> load_storm_devices(const std::string& dir, const std::vector<std::string>& ids);

}  // namespace devicegate::bench
