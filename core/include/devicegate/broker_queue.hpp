#pragma once
// Work that background threads hand to the broker thread: mosquitto's API may only be
// called there (DESIGN.md 3.1), so log lines and kicks are queued and drained in TICK.
// The mutex is held only to append or swap a vector, never during I/O.
#include "devicegate/log.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/reason.hpp"

#include <cstddef>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace devicegate {

struct kick_request {
    std::vector<serial_key> serials;  // disconnect the sessions holding these certificates (sorted)
    std::vector<std::string> device_ids;  // and these devices
    bool everyone = false;            // or every device session (the tenant chain was revoked)
    reason why = reason::internal_error;  // logged with the kick (revoked_crl, ca_revoked, ...)
};

class broker_queue {
public:
    static constexpr std::size_t max_log_lines = 10000;

    struct batch {
        std::vector<std::pair<log_level, std::string>> logs;
        std::vector<kick_request> kicks;
        std::size_t dropped_logs = 0;
    };

    void push_log(log_level level, std::string line) {
        std::lock_guard lock(mutex_);
        if (pending_.logs.size() >= max_log_lines) {
            ++pending_.dropped_logs;
            return;
        }
        pending_.logs.emplace_back(level, std::move(line));
    }

    void push_kick(kick_request kick) {
        std::lock_guard lock(mutex_);
        pending_.kicks.push_back(std::move(kick));
    }

    batch drain() {
        batch out;
        std::lock_guard lock(mutex_);
        std::swap(out, pending_);
        return out;
    }

private:
    std::mutex mutex_;
    batch pending_;
};

}  // namespace devicegate
