#pragma once
// hawkBit Management API (docs/integrations.md §B): one target per device id, controllerId = device id.
#include "backend.hpp"
#include "devicegate/job.hpp"
#include "devicegate/log.hpp"
#include "devicegate/http.hpp"
#include "metrics.hpp"
#include "worker_config.hpp"

#include <string>
#include <utility>
#include <vector>

namespace devicegate::worker {

/// The tag a keep-mode decommission gives a target (created if missing): rollouts can leave
/// such targets out with a target filter such as `tag!=devicegate-revoked`.
inline constexpr const char* revoked_tag = "devicegate-revoked";

class hawkbit_client {
public:
    /// Basic authentication on every call: a 401 goes to `gate` (consumption pauses). `setup`
    /// (shared by every worker thread) holds the resolved target type and tag ids.
    hawkbit_client(const hawkbit_settings& settings, std::chrono::milliseconds timeout, worker_metrics& metrics,
                   login_gate& gate, setup_lookup& setup);
    /// "created" (201) or "exists" (409, either errorCode spelling); throws target_failure.
    /// A new target gets the configured target type (looked up once; missing: paused).
    std::string ensure_target(const std::string& device_id);
    /// The target's metadata entries (key, value): POST all; 409 (a key exists) -> PUT each key,
    /// a key missing then is POSTed alone. "created" or "updated". Throws target_failure
    /// (a 403 quota is permanent: quota set).
    std::string write_metadata(const std::string& device_id, const std::vector<std::pair<std::string, std::string>>& entries);
    /// The id of the target type named exactly `name` (GET /rest/v1/targettypes?q=name==...), or "".
    std::string find_target_type(const std::string& name);
    /// Decommission (delete mode): DELETE /rest/v1/targets/{id}; "deleted" (200 in 0.9.0, 204
    /// later) or "absent" (404: already gone). Throws target_failure.
    std::string delete_target(const std::string& device_id);
    /// Decommission (keep mode): cancels every open action of the target and force-quits it
    /// (the revoked device cannot confirm a cancellation), then tags it `devicegate-revoked`.
    /// "revoked" or "absent". Idempotent. Throws target_failure.
    std::string revoke_target(const std::string& device_id);

    /// A re-registered target loses the devicegate-revoked tag of a keep-mode decommission
    /// (GET /rest/v1/targets/{id}/tags, then DELETE /rest/v1/targettags/{tagId}/assigned/{id}).
    /// True if it had it. Throws target_failure.
    bool drop_revoked_tag(const std::string& device_id);
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
    http_response send(const char* method, const std::string& path, const std::string* body, const char* call);
    /// Open (pending) actions canceled and force-quit; false if the target does not exist.
    bool end_open_actions(const std::string& device_id);
    /// The devicegate-revoked tag's id, created if missing.
    std::string tag_id();
    const hawkbit_settings& settings_;
    std::chrono::milliseconds timeout_;
    worker_metrics& metrics_;
    login_gate& gate_;
    setup_lookup& setup_;
    std::string authorization_;  // "Authorization: Basic ..." (a secret: never logged)
    http_client http_;
};

/// The metadata a registration writes (docs/integrations.md "Target metadata"): the certificate's
/// serial, notAfter (ISO 8601, UTC) and SHA-256 fingerprint. Throws std::invalid_argument if the
/// job's certificate cannot be read.
std::vector<std::pair<std::string, std::string>> hawkbit_metadata(const job& j);

}  // namespace devicegate::worker
