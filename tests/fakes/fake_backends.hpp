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
#include <vector>

namespace devicegate::fakes {

/// Faults for the next requests whose path starts with `path` ("" = every API path; the
/// /_fake/ control paths are never faulted). JSON on POST /_fake/faults:
///   {"fail_next":N,"status":503}   the next N requests get that status (contract error body)
///   {"fail_always":403}            every request gets that status until DELETE /_fake/faults
///   {"drop_next":N}                the next N responses are cut off after the headers
///                                  (the client sees the connection close mid-response)
///   {"latency_ms":M}               every request waits M ms first
///   {"retry_after":"S"}            injected statuses carry Retry-After: S (neither product sends
///                                  one; a proxy in front of them may)
struct fault_plan {
    std::string path;
    int fail_next = 0;
    int fail_status = 503;
    int fail_always = 0;
    int drop_next = 0;
    int latency_ms = 0;
    std::string retry_after;
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
    /// Called with mutex_ held before the faults and the routes: false after writing a refusal.
    virtual bool admit(const httplib::Request&, httplib::Response&) { return true; }

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
    /// What POST /api/rule-engine/... does (docs/integrations.md §E):
    ///   "stock"  ThingsBoard's own root rule chain (root_rule_chain.json) has no "rest call reply"
    ///            node: the message goes to "Log Other" and the call answers 408 with an empty body
    ///            once its timeout runs out (DefaultRuleEngineCallService.scheduleTimeout); the
    ///            timeout is the request's {timeout} segment, 10 s without one
    ///            (RuleEngineController.DEFAULT_TIMEOUT). "timeout" is the old name of this mode.
    ///   "reply"  a tenant chain with a reply node: 200 {"ack":true} at once (the fast path:
    ///            tests that want it say so).
    ///   "absent" ThingsBoard older than 3.8 (no RuleEngineController): JSON 404.
    std::string rule_engine = "stock";
    /// 0: wait the request's whole timeout, as ThingsBoard does. > 0: wait at most this long
    /// (tests that want the 408 without the real wait).
    std::chrono::milliseconds rule_engine_max_wait{0};
    /// Security settings' maxFailedLoginAttempts; 0 = no lockout (the stock setting).
    int max_failed_login_attempts = 0;
    /// Device profiles that exist besides "default"; customers (by title) of the tenant.
    std::vector<std::string> device_profiles;
    std::vector<std::string> customers;
};

/// ThingsBoard CE 3.9: /api/auth/login, /api/auth/token, /api/tenant/devices (by name, paged),
/// /api/device-with-credentials, /api/device/{id} (GET, DELETE), /api/device/{id}/credentials,
/// /api/device/credentials (versioned), /api/rule-engine/DEVICE/{id}[/{timeout}],
/// /api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE (+ values/attributes/SERVER_SCOPE),
/// /api/deviceProfileInfos, /api/deviceProfile/names, /api/deviceProfileInfo/default,
/// /api/tenant/customers?customerTitle=, /api/customer/{customerId}/device/{deviceId}.
/// /api/customer/{customerId} (GET).
/// Extra control: POST /_fake/expire_tokens, POST /_fake/rotate_signing_key, POST /_fake/unlock,
/// POST /_fake/device_profiles {"name"},
/// GET /_fake/devices/NAME, POST /_fake/devices/NAME/delete.
class fake_thingsboard : public fake_server {
public:
    explicit fake_thingsboard(thingsboard_options options = {});
    ~fake_thingsboard() override { stop(); }  // before the members the handlers use go away
    nlohmann::json state() const override;
    /// Every access token issued so far is now expired (401, errorCode 11).
    void expire_tokens();
    /// As if ThingsBoard restarted with a new JWT signing key: every token issued so far now
    /// fails its signature check (401, errorCode 11, JwtTokenFactory.parseTokenClaims).
    void rotate_signing_key();
    /// As if a tenant administrator created a device profile (POST /api/deviceProfile); its id.
    std::string add_device_profile(const std::string& name);
    /// As if a tenant administrator deleted the device in the UI; false if there is none.
    bool delete_device(const std::string& name);
    /// The device named `name` with its stored credentials value, messages and server-scope
    /// attributes; null if none.
    nlohmann::json device(const std::string& name) const;

private:
    struct device_record {
        std::string id, name, type, label, profile_id;
        std::string customer_id = "13814000-1dd2-11b2-8080-808080808080";  // NULL_UUID: unassigned
        std::int64_t created = 0;
        std::string credentials_id_uuid;
        std::string credentials_type = "X509_CERTIFICATE";  // or ACCESS_TOKEN (keep-mode decommission)
        std::string credentials_value;  // bare base64 DER, as ThingsBoard stores it ("" for a token)
        std::string credentials_hash;   // SHA3-256 hex of that base64 text; the token for ACCESS_TOKEN
        std::int64_t credentials_version = 1;  // JpaAbstractDao: 1 on create, +1 on every save
        nlohmann::json messages = nlohmann::json::array();
        nlohmann::json server_attributes = nlohmann::json::object();  // key -> {value, lastUpdateTs}
    };
    void error(httplib::Response& res, int status, const std::string& message, const httplib::Request& req) override;
    void reset_state() override;
    void tb_error(httplib::Response& res, int status, int code, const std::string& message) const;
    void erase_device(const device_record& d);
    /// Checks X-Authorization / Authorization; writes the 401 and returns false if refused.
    bool authorized(const httplib::Request& req, httplib::Response& res);
    nlohmann::json issue_pair(const std::string& user);
    nlohmann::json device_json(const device_record& d) const;
    nlohmann::json credentials_json(const device_record& d) const;
    /// The record for a device uuid, or null after writing BaseController.checkEntityId's JSON 404.
    device_record* find_or_404(const std::string& id, httplib::Response& res);
    /// AccessValidator.validateDevice: the plain-text 404 of the rule-engine and telemetry calls.
    static void access_validator_404(const httplib::Request& req, httplib::Response& res);
    /// DeviceServiceImpl.saveDevice: the profile id for a device body; auto-creates by `type`.
    std::string resolve_profile(const nlohmann::json& device, std::string& error);
    void add_login_routes();
    void add_device_routes();
    void add_credentials_routes();
    void add_rule_engine_routes();
    void add_attribute_routes();
    void add_profile_and_customer_routes();
    void add_control_routes();
    void handle_login(const httplib::Request& req, httplib::Response& res);
    void handle_create(const httplib::Request& req, httplib::Response& res);
    void handle_credentials_update(const httplib::Request& req, httplib::Response& res);
    void handle_rule_engine(const httplib::Request& req, httplib::Response& res);
    void handle_attributes(const httplib::Request& req, httplib::Response& res);
    /// GET /api/tenant/devices?pageSize=&page=[&type=][&textSearch=][&sortProperty=][&sortOrder=]
    /// as DeviceController.getTenantDevices pages it; with mutex_ held.
    void handle_device_page(const httplib::Request& req, httplib::Response& res);

    thingsboard_options options_;
    std::map<std::string, std::int64_t> access_tokens_;   // token -> exp (unix s); 0 = expired
    std::map<std::string, std::int64_t> refresh_tokens_;  // token -> exp
    std::map<std::string, device_record> devices_;        // by name
    std::map<std::string, std::string> names_by_id_;      // device uuid -> name
    std::map<std::string, std::string> credentials_owner_;  // credentials hash -> device name
    std::map<std::string, std::string> profiles_;         // name -> uuid
    std::map<std::string, std::string> customers_;        // title -> uuid
    std::uint64_t token_serial_ = 0;
    int failed_logins_ = 0;
    bool account_enabled_ = true;
    std::uint64_t logins_ = 0, refreshes_ = 0, auth_failures_ = 0, creates_ = 0, name_conflicts_ = 0,
                  credential_updates_ = 0, version_conflicts_ = 0, rule_engine_messages_ = 0,
                  rule_engine_timeouts_ = 0, attribute_writes_ = 0, deletes_ = 0, profiles_created_ = 0,
                  customer_assignments_ = 0;
};

struct hawkbit_options {
    std::string username = "admin";
    std::string password = "admin";
    bool legacy_error_codes = false;  // hawkBit <= 0.6.x spelled them "entitiyAlreayExists"
    /// DosFilter (hawkbit.server.security.dos.filter.*): off here by default because the stock
    /// filter exempts loopback and private addresses (its whitelist), which is where the fakes are
    /// reached from. On: every client IP counts, max-write / max-read requests per second.
    bool dos_filter = false;
    int dos_max_write = 50;
    int dos_max_read = 200;
    /// hawkbit.server.security.dos.max-meta-data-entries-per-target (quota: 403).
    int max_metadata_per_target = 100;
    /// Target types that exist at start (ids 1, 2, ... in this order).
    std::vector<std::string> target_types;
};

/// hawkBit 0.9.0 Management API: /rest/v1/targets (POST, GET one, GET paged, DELETE),
/// /rest/v1/targets/{id}/metadata[/{key}], /rest/v1/targets/{id}/targettype,
/// /rest/v1/targets/{id}/actions[/{actionId}] (GET, DELETE = cancel), /rest/v1/targets/{id}/tags,
/// /rest/v1/targettypes, /rest/v1/targettags[/{tagId}/assigned/{controllerId}].
/// Extra control: POST /_fake/targets/{id}/actions (adds a pending action), POST|DELETE /_fake/dos.
class fake_hawkbit : public fake_server {
public:
    explicit fake_hawkbit(hawkbit_options options = {});
    ~fake_hawkbit() override { stop(); }
    nlohmann::json state() const override;
    /// The target with its metadata, tags and actions; null if none.
    nlohmann::json target(const std::string& controller_id) const;

private:
    struct target_record {
        nlohmann::json body;                                    // MgmtTarget without _links
        std::map<std::string, std::string> metadata;
        std::set<std::int64_t> tags;
        std::map<std::int64_t, std::string> actions;            // action id -> status
    };
    void error(httplib::Response& res, int status, const std::string& message, const httplib::Request& req) override;
    void reset_state() override;
    bool authorized(const httplib::Request& req, httplib::Response& res);
    /// DosFilter.doFilterInternal: false after writing its 429 (empty body).
    bool admit(const httplib::Request& req, httplib::Response& res) override;
    void exception_info(httplib::Response& res, int status, const std::string& exception_class,
                        const std::string& code, const std::string& message) const;
    void not_found(httplib::Response& res, const std::string& type, const std::string& id) const;
    void not_readable(httplib::Response& res) const;
    bool json_body(const httplib::Request& req, httplib::Response& res, nlohmann::json& body) const;
    target_record* find_or_404(const std::string& id, httplib::Response& res);
    /// With mutex_ held: an authenticated request with a JSON body naming an existing target
    /// (path group 1); null after writing the refusal.
    target_record* target_request(const httplib::Request& req, httplib::Response& res, nlohmann::json& body);
    nlohmann::json target_json(const target_record& t, const httplib::Request& req) const;
    void add_target_routes();
    void add_metadata_routes();
    void add_action_routes();
    void add_type_and_tag_routes();
    void add_control_routes();
    void handle_create(const httplib::Request& req, httplib::Response& res);
    void handle_metadata_create(const httplib::Request& req, httplib::Response& res);
    void handle_cancel(const httplib::Request& req, httplib::Response& res);
    /// GET /rest/v1/targets?offset=&limit=[&sort=] as MgmtTargetResource.getTargets pages it; with
    /// mutex_ held.
    void handle_target_page(const httplib::Request& req, httplib::Response& res);

    hawkbit_options options_;
    std::map<std::string, target_record> targets_;  // by controllerId
    std::map<std::int64_t, nlohmann::json> target_types_, tags_;  // by id
    struct dos_window {
        std::chrono::steady_clock::time_point start;
        int count = 0;
    };
    std::map<std::string, dos_window> dos_reads_, dos_writes_;  // by client IP
    std::int64_t next_id_ = 1;
    std::uint64_t creates_ = 0, conflicts_ = 0, auth_failures_ = 0, deletes_ = 0, metadata_writes_ = 0,
                  quota_refusals_ = 0, dos_refusals_ = 0, cancels_ = 0, tag_assignments_ = 0;
};

}  // namespace devicegate::fakes
