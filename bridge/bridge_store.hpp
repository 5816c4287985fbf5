#pragma once
// What the bridge keeps in, and tells through, Redis: a small connection pool for the
// request threads, the deny-list entry of a revoked device (the same keys and format that
// devicegate-ctl revoke writes, see redis_model.hpp), the registration job at enrollment
// (the plugin's first-connect script, so the first connect does not enqueue it again), and
// the serials issued to each device.
//
//   <p>bridge:serials:<id>   SET of upper-case hex serials issued to the device
#include "devicegate/job.hpp"
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace devicegate::bridge {

class redis_pool {
public:
    explicit redis_pool(redis_options options, std::size_t max_idle = 16);
    /// Runs `f(connection)`; a connection that failed is dropped, and the call retried once
    /// on a fresh one. Throws redis_io_error / redis_data_error.
    template <class F>
    auto with(F&& f) {
        for (int attempt = 0;; ++attempt) {
            auto c = acquire();
            try {
                auto result = f(*c);
                release(std::move(c));
                return result;
            } catch (const redis_io_error&) {
                if (attempt > 0) throw;
            }
        }
    }

private:
    std::unique_ptr<redis_connection> acquire();
    void release(std::unique_ptr<redis_connection> c);
    redis_options options_;
    std::size_t max_idle_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<redis_connection>> idle_;
};


/// Runs the plugin's first-connect script for a just-issued certificate: 1 = registration job
/// enqueued, 2 = certificate-changed job enqueued (renewal), 0 = known already.
long long enqueue_registration(redis_connection& redis, const redis_model& model, const device_certificate& cert);
/// The device_certificate of a PEM leaf (fingerprint, serial) as the plugin would report it.
device_certificate describe_certificate(const std::string& device_id, const std::string& certificate_pem,
                                        const std::string& broker_id);

std::string serials_key(const redis_model& model, const std::string& device_id);
void remember_serial(redis_connection& redis, const redis_model& model, const std::string& device_id,
                     const std::string& serial_hex);
std::vector<std::string> serials_of(redis_connection& redis, const redis_model& model, const std::string& device_id);

}  // namespace devicegate::bridge
