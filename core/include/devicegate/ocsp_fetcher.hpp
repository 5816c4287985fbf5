#pragma once
// Fetches OCSP answers on a background thread: on request from the broker thread (a device
// without a cached answer) and ahead of expiry for connected devices. A revoked answer asks
// the broker thread to kick the device. The broker never waits on the network.
#include "devicegate/background_loop.hpp"
#include "devicegate/broker_queue.hpp"
#include "devicegate/http.hpp"
#include "devicegate/log.hpp"
#include "devicegate/ocsp.hpp"
#include "devicegate/tenant_trust.hpp"

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>

namespace devicegate {

class ocsp_fetcher {
public:
    struct options {
        std::string responder_override;  // "" = the certificate's AIA
        bool nonce = true;
        std::chrono::milliseconds timeout{std::chrono::seconds(5)};
        std::chrono::seconds skew{std::chrono::seconds(60)};
        std::chrono::seconds max_age{std::chrono::hours(1)};         // of an answer without nextUpdate
        std::chrono::seconds retry{std::chrono::seconds(5)};          // after a failed fetch
        std::chrono::seconds refresh_ahead{std::chrono::minutes(5)};  // for connected devices
        bool sub_ca = false;                   // keep an answer about the tenant Sub-CA too
        std::string sub_ca_responder_override; // "" = the Sub-CA's AIA
    };

    ocsp_fetcher(options opts, std::shared_ptr<const tenant_trust> trust, ocsp_cache& cache, broker_queue& queue,
                 logger log);
    ~ocsp_fetcher();
    ocsp_fetcher(const ocsp_fetcher&) = delete;
    ocsp_fetcher& operator=(const ocsp_fetcher&) = delete;

    void start();
    void stop() noexcept;
    /// Broker thread: fetch an answer for this certificate soon (deduplicated; no I/O here).
    void request(const sha256_digest& fingerprint, X509* leaf, const std::string& serial_hex);
    /// One fetch, synchronously (the thread's work; public for tests).
    void fetch(const sha256_digest& fingerprint, X509* leaf);

    std::uint64_t failures() const noexcept { return failures_.load(); }
    /// The tenant Sub-CA's fingerprint: the cache key of its own OCSP answer.
    const sha256_digest& sub_ca_fingerprint() const noexcept { return sub_ca_fingerprint_; }

private:
    void run(background_loop& loop);
    void refresh_due();

    options opts_;
    std::shared_ptr<const tenant_trust> trust_;
    ocsp_cache& cache_;
    broker_queue& queue_;
    logger log_;
    http_client http_;
    std::string last_failure_;  // log each cause once
    std::atomic<std::uint64_t> failures_{0};
    sha256_digest sub_ca_fingerprint_{};

    std::mutex mutex_;  // guards pending_
    std::deque<std::pair<sha256_digest, x509_ptr>> pending_;
    background_loop loop_;  // last: stopped before the members its thread uses go away
};

}  // namespace devicegate
