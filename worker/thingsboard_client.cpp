#include "thingsboard_client.hpp"

#include "devicegate/pki.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <functional>

namespace devicegate::worker {

using json = nlohmann::json;

namespace {

/// The `exp` claim of a JWT (not verified: only to refresh early); 0 if unreadable.
std::int64_t jwt_exp(const std::string& token) {
    auto first = token.find('.'), second = token.find('.', first + 1);
    if (first == std::string::npos || second == std::string::npos) return 0;
    std::string b64 = token.substr(first + 1, second - first - 1);
    std::replace(b64.begin(), b64.end(), '-', '+');
    std::replace(b64.begin(), b64.end(), '_', '/');
    while (b64.size() % 4 != 0) b64 += '=';
    std::string raw(b64.size(), '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(raw.data()),
                            reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
    if (n <= 0) return 0;
    raw.resize(static_cast<std::size_t>(n));
    raw.erase(raw.find_last_not_of('\0') + 1);  // EVP_DecodeBlock counts the padding
    json payload = json_or_null(raw);
    if (!payload.is_object() || !payload.contains("exp") || !payload["exp"].is_number_integer()) return 0;
    return payload["exp"].get<std::int64_t>();
}

std::string entity_id(const json& j) {
    if (j.is_object() && j.contains("id") && j["id"].is_object() && j["id"].contains("id") && j["id"]["id"].is_string()) {
        return j["id"]["id"].get<std::string>();
    }
    return "";
}

/// ThingsBoard's JSON error body ({"status","message","errorCode",...}); plain text is not.
bool is_json_error(const std::string& body) {
    json j = json_or_null(body);
    return j.is_object() && j.contains("errorCode");
}

int error_code(const std::string& body) {
    json j = json_or_null(body);
    if (!j.is_object() || !j.contains("errorCode") || !j["errorCode"].is_number_integer()) return -1;
    return j["errorCode"].get<int>();
}

bool is_uuid(const std::string& s) {
    if (s.size() != 36) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
    }
    return true;
}

/// The customer id of an unassigned entity (ModelConstants.NULL_UUID).
constexpr const char* null_uuid = "13814000-1dd2-11b2-8080-808080808080";

std::string customer_of(const json& device) {
    if (!device.is_object() || !device.contains("customerId") || !device["customerId"].is_object()) return null_uuid;
    return device["customerId"].value("id", std::string(null_uuid));
}

/// 128 random bits as hex: the access token that replaces a decommissioned device's
/// certificate. Nobody is told it (it is never logged or stored), so nothing authenticates.
std::string unknown_token() {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : b) out += std::string{hex[c >> 4], hex[c & 15]};
    return out;
}

[[noreturn]] void bad_answer(const std::string& call, const std::string& what) {
    throw target_failure(target::thingsboard, true, 200, "", "thingsboard: " + call + ": " + what);
}

}  // namespace

std::string thingsboard_certificate_value(const std::string& pem) {
    std::string out = pem;
    for (const std::string armour : {"-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"}) {
        for (auto at = out.find(armour); at != std::string::npos; at = out.find(armour)) out.erase(at, armour.size());
    }
    out.erase(std::remove_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }), out.end());
    return out;
}

// ---------------------------------------------------------------------------------------------
thingsboard_session::thingsboard_session(const thingsboard_settings& settings, std::chrono::milliseconds timeout,
                                         worker_metrics& metrics, login_gate& gate)
    : settings_(settings), timeout_(timeout), metrics_(metrics), gate_(gate) {}

std::string thingsboard_session::token(http_client& http) {
    std::lock_guard lock(mutex_);
    if (token_.empty()) {
        login(http);
    } else if (expires_at_ != 0 && std::time(nullptr) > expires_at_ - 60) {
        if (!refresh(http)) login(http);
    }
    return token_;
}

void thingsboard_session::expired(http_client& http, const std::string& stale) {
    std::lock_guard lock(mutex_);
    if (token_ != stale) return;  // another thread already has a new one
    if (!refresh(http)) login(http);
}

void thingsboard_session::login(http_client& http) {
    token_.clear();
    gate_.before_login();  // paused after a refusal: no request until the interval runs out
    const std::string body = json{{"username", settings_.username}, {"password", settings_.password}}.dump();
    http_get_options o;
    o.timeout = timeout_;
    auto r = http.post(settings_.url + "/api/auth/login", body, "application/json", o);
    if (r && r.status == 401) {
        // Wrong password, "User account is locked due to security policy" or "not active"
        // (DefaultSystemSecurityService): every one of them, repeated, makes things worse.
        metrics_.error(target::thingsboard, error_kind::auth);
        gate_.refused("POST /api/auth/login: HTTP 401 for user " + log_safe(settings_.username) + ": " +
                      excerpt(json_or_null(r.body).is_object() ? json_or_null(r.body).value("message", "") : r.body) +
                      "; check thingsboard_username / thingsboard_password, and whether the account is locked");
    }
    if (!r || r.status != 200) fail(target::thingsboard, r, "POST /api/auth/login", metrics_);
    take(r, "POST /api/auth/login");
    gate_.accepted();
    ++metrics_.thingsboard_logins;
}

bool thingsboard_session::refresh(http_client& http) {
    if (refresh_token_.empty()) return false;
    http_get_options o;
    o.timeout = timeout_;
    auto r = http.post(settings_.url + "/api/auth/token", json{{"refreshToken", refresh_token_}}.dump(),
                       "application/json", o);
    if (r && r.status == 401) {  // the refresh token expired too: log in again
        refresh_token_.clear();
        return false;
    }
    if (!r || r.status != 200) fail(target::thingsboard, r, "POST /api/auth/token", metrics_);
    take(r, "POST /api/auth/token");
    ++metrics_.thingsboard_refreshes;
    return true;
}

void thingsboard_session::take(const http_response& r, std::string_view call) {
    json j = json_or_null(r.body);
    if (!j.is_object() || !j.contains("token") || !j["token"].is_string() || !j.contains("refreshToken") ||
        !j["refreshToken"].is_string()) {
        bad_answer(std::string(call), "200 without token and refreshToken");
    }
    token_ = j["token"].get<std::string>();
    refresh_token_ = j["refreshToken"].get<std::string>();
    expires_at_ = jwt_exp(token_);
}

// ---------------------------------------------------------------------------------------------
thingsboard_client::thingsboard_client(const thingsboard_settings& settings, std::chrono::milliseconds timeout,
                                       thingsboard_session& session, worker_metrics& metrics, setup_lookup& setup)
    : settings_(settings), timeout_(timeout), session_(session), metrics_(metrics), setup_(setup) {}

http_response thingsboard_client::call(const char* method, const std::string& path, const std::string* body,
                                       std::chrono::milliseconds timeout, bool fresh_connection) {
    http_response r;
    for (int attempt = 0; attempt < 2; ++attempt) {
        const std::string token = session_.token(http_);
        http_get_options o;
        o.timeout = timeout;
        o.fresh_connection = fresh_connection;
        o.headers = {"X-Authorization: Bearer " + token, "Accept: application/json"};
        const std::string url = settings_.url + path;
        const std::string_view m(method);
        r = m == "GET" ? http_.get(url, o) : m == "DELETE" ? http_.del(url, o) : http_.post(url, *body, "application/json", o);
        // 401: expired (errorCode 11) or no longer valid (10, e.g. a restarted server with a
        // new signing key): refresh or log in again, then repeat the call once.
        if (!(r && r.status == 401)) break;
        session_.expired(http_, token);
    }
    return r;
}

thingsboard_client::result thingsboard_client::register_device(const job& j) {
    // The configured profile and customer first (looked up once): while one is missing every
    // registration waits, without a request, instead of half-registering devices.
    device_profile_id();
    customer_id();
    // Each round starts from the lookup: a lost name race, or a device deleted between our
    // lookup and a later call (a 404 from its uuid), sends us back to find or create it.
    for (int round = 0; round < 4; ++round) {
        result out;
        if (!find_or_create(j, out)) continue;
        if (out.action.empty()) {
            out.action = ensure_credentials(out.device_uuid, j.cert.certificate_pem);
            if (out.action.empty()) continue;
        }
        if (!assign_customer(out)) continue;
        if (!write_attributes(out.device_uuid, j)) continue;
        out.notified = notify(out.device_uuid, j);
        if (out.notified.empty()) continue;
        return out;
    }
    throw target_failure(target::thingsboard, true, 404, "",
                         "thingsboard: device " + j.cert.device_id +
                             " vanished or could not be looked up four times in a row; will retry");
}

std::string thingsboard_client::lookup(const std::string& device_id) {
    const std::string path = "/api/tenant/devices?deviceName=" + device_id;  // safe alphabet
    auto r = call("GET", path, nullptr, timeout_);
    if (r && r.status == 404) return "";
    if (!(r && r.status == 200)) fail(target::thingsboard, r, "GET /api/tenant/devices", metrics_);
    const std::string uuid = entity_id(json_or_null(r.body));
    if (uuid.empty()) bad_answer("GET " + path, "200 without id.id");
    return uuid;
}

std::string thingsboard_client::delete_device(const std::string& device_id) {
    const std::string uuid = lookup(device_id);
    if (uuid.empty()) return "absent";
    // DeviceController.deleteDevice: 200 with an empty body; 404 if deleted meanwhile.
    auto d = call("DELETE", "/api/device/" + uuid, nullptr, timeout_);
    if (d && d.status == 200) return "deleted";
    if (d && d.status == 404) return "absent";
    fail(target::thingsboard, d, "DELETE /api/device/{id}", metrics_);
}

bool thingsboard_client::find_or_create(const job& j, result& out) {
    const std::string& id = j.cert.device_id;  // safe alphabet: no escaping needed in the query
    const std::string lookup = "/api/tenant/devices?deviceName=" + id;
    auto r = call("GET", lookup, nullptr, timeout_);
    if (r && r.status == 200) {
        const json found = json_or_null(r.body);
        out.device_uuid = entity_id(found);
        if (out.device_uuid.empty()) bad_answer("GET " + lookup, "200 without id.id");
        out.customer_id = customer_of(found);
        return true;
    }
    if (!(r && r.status == 404)) fail(target::thingsboard, r, "GET /api/tenant/devices", metrics_);
    json device{{"name", id}};
    // By id, never by `type`: ThingsBoard finds *or creates* a profile named by the type
    // (DeviceServiceImpl.doSaveDeviceWithoutCredentials -> findOrCreateDeviceProfile), so a
    // typo would silently make an empty profile. Neither: the tenant's default profile.
    if (const std::string profile = device_profile_id(); !profile.empty()) {
        device["deviceProfileId"] = {{"entityType", "DEVICE_PROFILE"}, {"id", profile}};
    }
    if (!settings_.label.empty()) device["label"] = expand_label(settings_.label, id, j.cert.serial_hex);
    const std::string body =
        json{{"device", device},
             {"credentials", {{"credentialsType", "X509_CERTIFICATE"}, {"credentialsValue", j.cert.certificate_pem}}}}
            .dump();
    auto c = call("POST", "/api/device-with-credentials", &body, timeout_);
    if (c && c.status == 200) {
        const json created = json_or_null(c.body);
        out.device_uuid = entity_id(created);
        if (out.device_uuid.empty()) bad_answer("POST /api/device-with-credentials", "200 without id.id");
        out.customer_id = customer_of(created);
        out.action = "created";
        ++metrics_.created[static_cast<std::size_t>(target::thingsboard)];
        return true;
    }
    // "Device with such name already exists!" (400, errorCode 31): another worker created
    // it between our lookup and our create; look it up again.
    if (c && c.status == 400 && c.body.find("such name already exists") != std::string::npos) return false;
    fail(target::thingsboard, c, "POST /api/device-with-credentials", metrics_);
}

std::string thingsboard_client::save_credentials(const std::string& uuid, const std::function<bool(json&)>& change) {
    const std::string path = "/api/device/" + uuid + "/credentials";
    // DeviceCredentials is versioned (HasVersion): a save with a stale version is 409 with
    // errorCode 35 (EntityVersionMismatchException). Someone saved in between: read again.
    for (int round = 0; round < 3; ++round) {
        auto r = call("GET", path, nullptr, timeout_);
        if (r && r.status == 404) return "";  // BaseController.checkEntityId: deleted meanwhile
        if (!(r && r.status == 200)) fail(target::thingsboard, r, "GET /api/device/{id}/credentials", metrics_);
        json creds = json_or_null(r.body);
        if (!creds.is_object()) bad_answer("GET /api/device/{id}/credentials", "200 without a JSON object");
        if (!change(creds)) return "unchanged";
        const std::string body = creds.dump();  // may hold a secret (a token): never logged
        auto u = call("POST", "/api/device/credentials", &body, timeout_);
        if (u && u.status == 200) return "saved";
        if (u && u.status == 404) return "";
        if (u && u.status == 409 && error_code(u.body) == 35) {
            ++metrics_.credentials_version_conflicts;
            continue;
        }
        fail(target::thingsboard, u, "POST /api/device/credentials", metrics_);
    }
    throw target_failure(target::thingsboard, true, 409, "",
                         "thingsboard: POST /api/device/credentials: version conflict (409, errorCode 35) three "
                         "times in a row; will retry");
}

std::string thingsboard_client::ensure_credentials(const std::string& uuid, const std::string& pem) {
    const std::string saved = save_credentials(uuid, [&](json& creds) {
        const json& value = creds["credentialsValue"];
        if (creds.value("credentialsType", "") == "X509_CERTIFICATE" && value.is_string() &&
            value.get<std::string>() == thingsboard_certificate_value(pem)) {
            return false;
        }
        creds["credentialsType"] = "X509_CERTIFICATE";
        creds["credentialsValue"] = pem;
        creds.erase("credentialsId");  // recomputed by the server
        return true;
    });
    if (saved != "saved") return saved;
    ++metrics_.credentials_updated;
    return "credentials_updated";
}

bool thingsboard_client::write_attributes(const std::string& uuid, const job& j) {
    json attributes;
    try {
        attributes = thingsboard_attributes(j);
    } catch (const std::invalid_argument& e) {
        throw target_failure(target::thingsboard, false, 0, "", std::string("thingsboard: ") + e.what());
    }
    const std::string body = attributes.dump();
    auto r = call("POST", "/api/plugins/telemetry/DEVICE/" + uuid + "/attributes/SERVER_SCOPE", &body, timeout_);
    if (r && r.status == 200) {
        ++metrics_.attribute_writes;
        return true;
    }
    if (r && r.status == 404 && !is_json_error(r.body)) return false;  // AccessValidator: device gone
    fail(target::thingsboard, r, "POST /api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", metrics_);
}

std::string thingsboard_client::notify(const std::string& uuid, const job& j) {
    if (!settings_.rule_engine) return "off";
    const json message{{"event", j.type == job_type::first_connect ? "firstConnect" : "certificateChanged"},
                       {"deviceId", j.cert.device_id},
                       {"serial", j.cert.serial_hex},
                       {"fingerprintSha256", j.cert.fingerprint_sha256},
                       {"firstSeen", j.cert.first_seen},
                       {"brokerId", j.cert.broker_id}};
    const std::string body = message.dump();
    const auto wait = settings_.rule_engine_timeout;
    // A fresh connection: libcurl re-sends a request on a new connection when a reused one
    // dies before any answer (lib/transfer.c Curl_retry_request), and this message is not
    // idempotent (each one is a new Rule Engine message). A fresh connection is never retried.
    auto r = call("POST", "/api/rule-engine/DEVICE/" + uuid + "/" + std::to_string(wait.count()), &body,
                  wait + timeout_, true);
    // 200: a "rest call reply" node answered. 408: the message was queued and no reply node
    // answered in time (the stock root chain has none: DefaultRuleEngineCallService); that
    // does not mean a rule node processed it.
    if (r && r.status == 200) return "delivered";
    if (r && r.status == 408) {
        ++metrics_.rule_engine_unanswered;
        return "queued";
    }
    if (r && r.status == 404) {
        // AccessValidator answers a deleted device with plain text; only a JSON error body means
        // there is no RuleEngineController (ThingsBoard older than 3.8).
        if (!is_json_error(r.body)) return "";
        ++metrics_.rule_engine_unsupported;
        return "unsupported";
    }
    fail(target::thingsboard, r, "POST /api/rule-engine/DEVICE/{id}", metrics_);
}

std::string thingsboard_client::find_device_profile(const std::string& name) {
    const std::string query = url_encode(name);
    for (int page = 0; page < 1000; ++page) {
        auto r = call("GET", "/api/deviceProfileInfos?pageSize=100&page=" + std::to_string(page) + "&textSearch=" + query,
                      nullptr, timeout_);
        if (!(r && r.status == 200)) fail(target::thingsboard, r, "GET /api/deviceProfileInfos", metrics_);
        json infos = json_or_null(r.body);
        if (!infos.is_object() || !infos.contains("data") || !infos["data"].is_array()) {
            bad_answer("GET /api/deviceProfileInfos", "200 without a data array");
        }
        for (const json& p : infos["data"]) {
            if (p.is_object() && p.value("name", "") == name) return entity_id(p);
        }
        if (!infos.value("hasNext", false)) break;
    }
    return "";
}

std::string thingsboard_client::find_customer(const std::string& title_or_id) {
    // CustomerController: GET /api/customer/{id}, GET /api/tenant/customers?customerTitle= (exact
    // title); both answer 404 (JSON, errorCode 32) when there is none.
    const bool by_id = is_uuid(title_or_id);
    const std::string path = by_id ? "/api/customer/" + title_or_id : "/api/tenant/customers?customerTitle=" + url_encode(title_or_id);
    auto r = call("GET", path, nullptr, timeout_);
    if (r && r.status == 404) return "";
    if (!(r && r.status == 200)) fail(target::thingsboard, r, by_id ? "GET /api/customer/{id}" : "GET /api/tenant/customers", metrics_);
    const std::string id = entity_id(json_or_null(r.body));
    if (id.empty()) bad_answer(by_id ? "GET /api/customer/{id}" : "GET /api/tenant/customers", "200 without id.id");
    return id;
}

std::string thingsboard_client::device_profile_id() {
    const std::string& name = settings_.device_profile;
    if (name.empty()) return "";
    return setup_.resolve("profile", [&] { return find_device_profile(name); },
                          "device profile '" + log_safe(name) +
                              "' not found in ThingsBoard: registrations paused; create it or fix thingsboard_device_profile");
}

std::string thingsboard_client::customer_id() {
    const std::string& name = settings_.customer;
    if (name.empty()) return "";
    return setup_.resolve("customer", [&] { return find_customer(name); },
                          "customer '" + log_safe(name) +
                              "' not found in ThingsBoard: registrations paused; create it or fix thingsboard_customer");
}

bool thingsboard_client::assign_customer(result& out) {
    // Only a device without a customer: an operator may have moved it on purpose.
    if (settings_.customer.empty() || (!out.customer_id.empty() && out.customer_id != null_uuid)) return true;
    const std::string customer = customer_id();
    const std::string empty;
    auto r = call("POST", "/api/customer/" + customer + "/device/" + out.device_uuid, &empty, timeout_);
    if (r && r.status == 200) {
        out.customer_id = customer;
        out.assigned = true;
        ++metrics_.thingsboard_customer_assignments;
        return true;
    }
    // DeviceController.assignDeviceToCustomer checks the customer first, then the device.
    const json error = r ? json_or_null(r.body) : json();
    if (r && r.status == 404 && error.is_object() && error.value("message", "").rfind("Customer", 0) == 0) {
        setup_.forget("customer");  // deleted since we looked it up: look it up again (or pause)
    } else if (r && r.status == 404) {
        return false;  // the device is gone: find or create it again
    }
    fail(target::thingsboard, r, "POST /api/customer/{customerId}/device/{deviceId}", metrics_);
}

std::string thingsboard_client::revoke_device(const std::string& device_id, const std::string& reason,
                                              std::int64_t revoked_at_s) {
    for (int round = 0; round < 4; ++round) {
        const std::string uuid = lookup(device_id);
        if (uuid.empty()) return "absent";
        if (replace_credentials(uuid).empty()) continue;
        const std::string body =
            json{{"revoked", true}, {"revokedTime", revoked_at_s * 1000}, {"revokedReason", reason}}.dump();
        auto r = call("POST", "/api/plugins/telemetry/DEVICE/" + uuid + "/attributes/SERVER_SCOPE", &body, timeout_);
        if (r && r.status == 200) {
            ++metrics_.attribute_writes;
            return "revoked";
        }
        if (r && r.status == 404 && !is_json_error(r.body)) continue;  // AccessValidator: gone meanwhile
        fail(target::thingsboard, r, "POST /api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", metrics_);
    }
    throw target_failure(target::thingsboard, true, 404, "",
                         "thingsboard: device " + device_id + " changed under us four times in a row; will retry");
}

std::string thingsboard_client::replace_credentials(const std::string& uuid) {
    const std::string saved = save_credentials(uuid, [](json& creds) {
        // Already replaced by an earlier attempt (this worker never gives a device a token).
        if (creds.value("credentialsType", "") == "ACCESS_TOKEN") return false;
        // ACCESS_TOKEN: the credentialsId is the token itself (DeviceCredentialsServiceImpl); no
        // DELETE exists for credentials (DeviceController), and a device always has one set.
        creds["credentialsType"] = "ACCESS_TOKEN";
        creds["credentialsId"] = unknown_token();
        creds["credentialsValue"] = nullptr;
        return true;
    });
    if (saved != "saved") return saved;
    ++metrics_.thingsboard_credentials_revoked;
    return "replaced";
}

json thingsboard_attributes(const job& j) {
    auto certs = parse_certificates(j.cert.certificate_pem, "job certificate");
    if (certs.empty()) throw std::invalid_argument("the job's certificate_pem holds no certificate");
    X509* leaf = certs.front().get();
    const auto ms = [](std::int64_t seconds) { return seconds * 1000; };
    json out{{"certificateSerial", j.cert.serial_hex},
             {"certificateNotAfter", ms(static_cast<std::int64_t>(to_time_t(X509_get0_notAfter(leaf))))},
             {"certificateIssuer", name_line(X509_get_issuer_name(leaf))},
             {"certificateFingerprintSha256", j.cert.fingerprint_sha256},
             {"certificateFirstSeen", ms(j.cert.first_seen)},
             {"devicegateBrokerId", j.cert.broker_id},
             {"devicegateEvent", j.type == job_type::first_connect ? "firstConnect" : "certificateChanged"}};
    // A registration (also after `devicegate-ctl reregister`) ends a keep-mode decommission's
    // revoked=true (thingsboard_client::revoke_device).
    out["revoked"] = false;
    // A renewal must not move the first connect: only a first-connect job writes it.
    if (j.type == job_type::first_connect) out["firstConnectTime"] = ms(j.cert.first_seen);
    return out;
}

}  // namespace devicegate::worker
