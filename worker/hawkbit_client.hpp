#pragma once
// hawkBit Management API (docs/integrations.md §B): one target per device id, controllerId = device id.
#include "backend.hpp"
#include "devicegate/log.hpp"
#include "devicegate/http.hpp"
#include "metrics.hpp"
#include "worker_config.hpp"

#include <string>

namespace devicegate::worker {

class hawkbit_client {
public:
    /// Basic authentication on every call: a 401 goes to `gate` (consumption pauses).
    hawkbit_client(const hawkbit_settings& settings, std::chrono::milliseconds timeout, worker_metrics& metrics,
                   login_gate& gate);
    /// "created" (201) or "exists" (409, either errorCode spelling); throws target_failure.
    std::string ensure_target(const std::string& device_id);
    /// Decommission (delete mode): DELETE /rest/v1/targets/{id}; "deleted" (200 in 0.9.0, 204
    /// later) or "absent" (404: already gone). Throws target_failure.
    std::string delete_target(const std::string& device_id);
    /// An authenticated GET of `path` (a 401 pauses through the gate): inventory.cpp's paging.
    http_response get(const std::string& path, const char* call) {
        gate_.before_login();
        auto r = http_.get(settings_.url + path, options());
        check_login(r, call);
        return r;
    }
    worker_metrics& metrics() noexcept { return metrics_; }

private:
    http_get_options options() const;
    /// A 401 pauses the target (login_gate); anything else is accepted as a login.
    void check_login(const http_response& r, const char* call);
    const hawkbit_settings& settings_;
    std::chrono::milliseconds timeout_;
    worker_metrics& metrics_;
    login_gate& gate_;
    std::string authorization_;  // "Authorization: Basic ..." (a secret: never logged)
    http_client http_;
};

}  // namespace devicegate::worker
