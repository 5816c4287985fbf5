#pragma once
// Faithful stand-ins for ThingsBoard CE 3.x and hawkBit's Management API, implementing the
// endpoints, status codes, error bodies and auth rules of docs/integrations.md (ThingsBoard,
// hawkBit; and nothing else). They keep state so tests can count what was created, expose it on
// /_fake/state, and inject faults on request (POST /_fake/faults, see fault_plan). Used by
// the unit tests (in-process), the integration tests and the README's local stack
// (the devicegate-fakes executable).
#include <httplib.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace devicegate::fakes {

/// Faults for the next requests whose path starts with `path` ("" = every API path; the
/// /_fake/ control paths are never faulted). JSON on POST /_fake/faults:
///   {"fail_next":N,"status":503}   the next N requests get that status (contract error body)
///   {"fail_always":403}            every request gets that status until DELETE /_fake/faults
///   {"drop_next":N}                the next N responses are cut off after the headers
///                                  (the client sees the connection close mid-response)
///   {"latency_ms":M}               every request waits M ms first
struct fault_plan {
    std::string path;
    int fail_next = 0;
    int fail_status = 503;
    int fail_always = 0;
    int drop_next = 0;
    int latency_ms = 0;
};

class fake_server {
public:
    virtual ~fake_server();
    fake_server(const fake_server&) = delete;
    fake_server& operator=(const fake_server&) = delete;

    /// Binds host:port (0 = any free port) and serves on a background thread; returns the port.
    int start(const std::string& host, int port);
    void stop();
    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    void set_faults(const fault_plan& plan);
    /// Counters and contents for assertions (also GET /_fake/state).
    virtual nlohmann::json state() const = 0;

protected:
    fake_server();
    /// The product's error response for an injected status.
    virtual void error(httplib::Response& res, int status, const std::string& message, const httplib::Request& req) = 0;
    virtual void reset_state() = 0;

    httplib::Server server_;
    mutable std::mutex mutex_;
    std::uint64_t requests_ = 0;
    std::uint64_t faults_injected_ = 0;

private:
    httplib::Server::HandlerResponse apply_faults(const httplib::Request& req, httplib::Response& res);

    fault_plan faults_;
    std::thread thread_;
    int port_ = 0;
};

struct thingsboard_options {
    std::string username = "tenant@thingsboard.org";
    std::string password = "tenant";
    std::chrono::seconds access_ttl{9000};    // thingsboard.yml defaults
    std::chrono::seconds refresh_ttl{604800};
    /// What POST /api/rule-engine/... does: "reply" (a rest-call-reply node answers 200),
    /// "timeout" (no reply node: 408 after the request's timeout, at most 2 s here),
    /// "absent" (ThingsBoard older than 3.8: 404).
    std::string rule_engine = "reply";
};

/// ThingsBoard CE: /api/auth/login, /api/auth/token, /api/tenant/devices?deviceName=,
/// /api/device-with-credentials, /api/device/{id}/credentials, /api/device/credentials,
/// /api/rule-engine/DEVICE/{id}/{timeout}. Extra control: POST /_fake/expire_tokens.
class fake_thingsboard : public fake_server {
public:
    explicit fake_thingsboard(thingsboard_options options = {});
    ~fake_thingsboard() override { stop(); }  // before the members the handlers use go away
    nlohmann::json state() const override;
    /// Every access token issued so far is now expired (401, errorCode 11).
    void expire_tokens();
    /// The device named `name` with its stored credentials value and messages; null if none.
    nlohmann::json device(const std::string& name) const;

private:
    struct device_record {
        std::string id, name, type;
        std::int64_t created = 0;
        std::string credentials_id_uuid;
        std::string credentials_value;  // bare base64 DER, as ThingsBoard stores it
        std::string credentials_hash;   // SHA3-256 hex of that base64 text
        int credentials_version = 0;
        nlohmann::json messages = nlohmann::json::array();
    };
    void error(httplib::Response& res, int status, const std::string& message, const httplib::Request& req) override;
    void reset_state() override;
    void tb_error(httplib::Response& res, int status, int code, const std::string& message) const;
    /// Checks X-Authorization / Authorization; writes the 401 and returns false if refused.
    bool authorized(const httplib::Request& req, httplib::Response& res);
    nlohmann::json issue_pair(const std::string& user);
    nlohmann::json device_json(const device_record& d) const;
    nlohmann::json credentials_json(const device_record& d) const;

    thingsboard_options options_;
    std::map<std::string, std::int64_t> access_tokens_;   // token -> exp (unix s); 0 = expired
    std::map<std::string, std::int64_t> refresh_tokens_;  // token -> exp
    std::map<std::string, device_record> devices_;        // by name
    std::map<std::string, std::string> names_by_id_;      // device uuid -> name
    std::map<std::string, std::string> credentials_owner_;  // credentials hash -> device name
    std::uint64_t token_serial_ = 0;
    std::uint64_t logins_ = 0, refreshes_ = 0, auth_failures_ = 0, creates_ = 0, name_conflicts_ = 0,
                  credential_updates_ = 0, rule_engine_messages_ = 0;
};

struct hawkbit_options {
    std::string username = "admin";
    std::string password = "admin";
    bool legacy_error_codes = false;  // hawkBit <= 0.6.x spelled them "entitiyAlreayExists"
};

/// hawkBit Management API: POST /rest/v1/targets, GET /rest/v1/targets/{controllerId}.
class fake_hawkbit : public fake_server {
public:
    explicit fake_hawkbit(hawkbit_options options = {});
    ~fake_hawkbit() override { stop(); }
    nlohmann::json state() const override;

private:
    void error(httplib::Response& res, int status, const std::string& message, const httplib::Request& req) override;
    void reset_state() override;
    bool authorized(const httplib::Request& req, httplib::Response& res);
    void exception_info(httplib::Response& res, int status, const std::string& exception_class,
                        const std::string& code, const std::string& message) const;
    nlohmann::json target_json(const nlohmann::json& t, const httplib::Request& req) const;

    hawkbit_options options_;
    std::map<std::string, nlohmann::json> targets_;  // by controllerId
    std::uint64_t creates_ = 0, conflicts_ = 0, auth_failures_ = 0;
};

}  // namespace devicegate::fakes
