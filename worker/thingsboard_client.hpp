#pragma once
// ThingsBoard CE REST (docs/integrations.md §A, §D): one device per device id holding the device's
// leaf certificate as X.509 credentials, server-scope attributes describing the certificate (the
// notification: persistent, idempotent, ATTRIBUTES_UPDATED in the Rule Engine), and optionally a
// Rule Engine REST message (off by default: the stock root chain never answers it).
#include "backend.hpp"
#include "devicegate/log.hpp"
#include "devicegate/http.hpp"
#include "devicegate/job.hpp"
#include "metrics.hpp"
#include "worker_config.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace devicegate::worker {

/// The tenant login shared by every worker thread: log in once, refresh with the refresh
/// token before `exp` (or after a 401 errorCode 11), log in again if the refresh fails.
/// Tokens and the password never reach a log line.
class thingsboard_session {
public:
    /// A refused login (401) goes to `gate`: consumption pauses, one probe per interval.
    thingsboard_session(const thingsboard_settings& settings, std::chrono::milliseconds timeout, worker_metrics& metrics,
                        login_gate& gate);
    /// A token valid for a while; logs in or refreshes through `http` if needed.
    std::string token(http_client& http);
    /// The server said `stale` has expired: refresh (once, whichever thread comes first).
    void expired(http_client& http, const std::string& stale);

private:
    void login(http_client& http);
    bool refresh(http_client& http);
    void take(const http_response& r, std::string_view call);

    const thingsboard_settings& settings_;
    std::chrono::milliseconds timeout_;
    worker_metrics& metrics_;
    login_gate& gate_;
    std::mutex mutex_;
    std::string token_;
    std::string refresh_token_;
    std::int64_t expires_at_ = 0;  // unix seconds from the JWT's exp; 0 = unknown
};

class thingsboard_client {
public:
    /// `setup` (shared by every worker thread) holds the resolved profile and customer ids.
    thingsboard_client(const thingsboard_settings& settings, std::chrono::milliseconds timeout,
                       thingsboard_session& session, worker_metrics& metrics, setup_lookup& setup);

    struct result {
        std::string device_uuid;
        std::string action;    // created | credentials_updated | unchanged
        std::string notified;  // delivered (200) | queued (408: no reply node) | unsupported | off
        std::string customer_id;  // the device's customer as ThingsBoard answered it (NULL_UUID: none)
        bool assigned = false;    // this call assigned it to thingsboard_customer
    };
    /// Idempotent: finds or creates the device, makes its credentials this certificate, writes
    /// its server-scope attributes, then (if configured) sends the Rule Engine message. A device
    /// deleted meanwhile is created again. Throws target_failure.
    result register_device(const job& j);

    /// The id of the device profile named exactly `name` (GET /api/deviceProfileInfos, paged;
    /// its textSearch is a case-insensitive substring match), or "" if there is none. Throws
    /// target_failure.
    std::string find_device_profile(const std::string& name);
    /// Decommission (delete mode): DELETE /api/device/{uuid} of the device named `device_id`.
    /// "deleted", or "absent" when the lookup or the delete answers 404 (already gone).
    /// Throws target_failure.
    std::string delete_device(const std::string& device_id);
    /// The id of the customer `title_or_id` names (a UUID is checked with GET /api/customer/{id},
    /// anything else is a title: GET /api/tenant/customers?customerTitle=), or "" if none.
    std::string find_customer(const std::string& title_or_id);
    /// The configured profile's and customer's ids through `setup` (looked up once; missing:
    /// paused). Empty when not configured.
    std::string device_profile_id();
    std::string customer_id();
    /// Decommission (keep mode): the device stays, its X.509 credentials are replaced by an
    /// access token nobody knows (so the old certificate no longer authenticates: ThingsBoard
    /// finds a device by the certificate's SHA3-256, DeviceCredentialsServiceImpl), and the
    /// server-scope attributes revoked/revokedTime/revokedReason are written. "revoked", or
    /// "absent" when there is no such device. Idempotent. Throws target_failure.
    std::string revoke_device(const std::string& device_id, const std::string& reason, std::int64_t revoked_at_s);
    /// An authenticated GET of `path` (token refresh as every call): inventory.cpp's paging.
    http_response get(const std::string& path) { return call("GET", path, nullptr, timeout_); }
    worker_metrics& metrics() noexcept { return metrics_; }

private:
    http_response call(const char* method, const std::string& path, const std::string* body,
                       std::chrono::milliseconds timeout, bool fresh_connection = false);
    /// Looks the device up by name or creates it; false when another worker won the name race.
    bool find_or_create(const job& j, result& out);
    /// The credentials' new state, or "" when the device is gone (deleted meanwhile).
    std::string ensure_credentials(const std::string& uuid, const std::string& pem);
    /// false when the device is gone (AccessValidator's plain-text 404).
    bool write_attributes(const std::string& uuid, const job& j);
    /// "" when the device is gone.
    std::string notify(const std::string& uuid, const job& j);
    /// Assigns the device to the configured customer if it has none; false when it is gone.
    bool assign_customer(result& out);
    /// The device's uuid by name, or "" (404). Throws target_failure.
    std::string lookup(const std::string& device_id);
    /// Reads the credentials, lets `change` edit them (false: nothing to do) and saves them; a
    /// stale version (409/35) is read again. "saved", "unchanged", or "" when the device is gone.
    std::string save_credentials(const std::string& uuid, const std::function<bool(nlohmann::json&)>& change);
    /// Keep mode: "" when gone, else replaced | unchanged (already not X.509).
    std::string replace_credentials(const std::string& uuid);

    const thingsboard_settings& settings_;
    std::chrono::milliseconds timeout_;
    thingsboard_session& session_;
    worker_metrics& metrics_;
    http_client http_;
    setup_lookup& setup_;
};

/// The server-scope attributes written for a job (docs/integrations.md "Notification"): times
/// in milliseconds since the epoch, as ThingsBoard keeps them. Throws std::invalid_argument if
/// the job's certificate cannot be read.
nlohmann::json thingsboard_attributes(const job& j);

/// The bare base64 DER ThingsBoard stores for a PEM (DeviceCredentialsServiceImpl.formatCertData).
std::string thingsboard_certificate_value(const std::string& pem);

}  // namespace devicegate::worker
