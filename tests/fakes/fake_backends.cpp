#include "fake_backends.hpp"

#include "devicegate/pki.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace devicegate::fakes {

using json = nlohmann::json;
using httplib::Request;
using httplib::Response;

namespace {

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }
std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string random_uuid() {
    unsigned char b[16];
    RAND_bytes(b, sizeof b);
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x10);  // ThingsBoard uses time-based (v1) UUIDs
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
    char out[37];
    std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                  b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return out;
}

std::string base64url(const std::string& in) {
    std::string out = devicegate::base64_encode(in);
    while (!out.empty() && out.back() == '=') out.pop_back();
    std::replace(out.begin(), out.end(), '+', '-');
    std::replace(out.begin(), out.end(), '/', '_');
    return out;
}

std::string sha3_hex(const std::string& text) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text.data(), text.size(), md, &len, EVP_sha3_256(), nullptr);
    std::string hex;
    char buf[3];
    for (unsigned i = 0; i < len; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", md[i]);
        hex += buf;
    }
    return hex;
}

/// DeviceCredentialsServiceImpl.formatCertData: strip the PEM armour, \n and \r.
std::string bare_base64(std::string pem) {
    for (const char* armour : {"-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"}) {
        for (auto at = pem.find(armour); at != std::string::npos; at = pem.find(armour)) pem.erase(at, std::strlen(armour));
    }
    pem.erase(std::remove_if(pem.begin(), pem.end(), [](char c) { return c == '\n' || c == '\r'; }), pem.end());
    return pem;
}

bool is_base64(const std::string& s) {
    if (s.empty() || s.size() % 4 != 0) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=';
    });
}

json parse_or_null(const std::string& body) {
    try {
        return json::parse(body);
    } catch (const json::exception&) {
        return nullptr;
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
fake_server::fake_server() {
    // One thread per keep-alive connection: enough for a worker's whole connection pool.
    server_.new_task_queue = [] { return new httplib::ThreadPool(96); };
    server_.set_keep_alive_max_count(100000);
    server_.set_keep_alive_timeout(30);
    server_.set_tcp_nodelay(true);
    server_.set_pre_routing_handler([this](const Request& req, Response& res) { return apply_faults(req, res); });
    server_.Post("/_fake/faults", [this](const Request& req, Response& res) {
        json j = parse_or_null(req.body);
        if (!j.is_object()) {
            res.status = 400;
            res.set_content(R"({"error":"expected a JSON object"})", "application/json");
            return;
        }
        fault_plan p;
        p.path = j.value("path", std::string());
        p.fail_next = j.value("fail_next", 0);
        p.fail_status = j.value("status", 503);
        p.fail_always = j.value("fail_always", 0);
        p.drop_next = j.value("drop_next", 0);
        p.latency_ms = j.value("latency_ms", 0);
        set_faults(p);
        res.set_content("{}", "application/json");
    });
    server_.Delete("/_fake/faults", [this](const Request&, Response& res) {
        set_faults({});
        res.set_content("{}", "application/json");
    });
    server_.Get("/_fake/state", [this](const Request&, Response& res) { res.set_content(state().dump(), "application/json"); });
    server_.Post("/_fake/reset", [this](const Request&, Response& res) {
        std::lock_guard lock(mutex_);
        faults_ = {};
        reset_state();
        res.set_content("{}", "application/json");
    });
}

fake_server::~fake_server() { stop(); }

int fake_server::start(const std::string& host, int port) {
    port_ = port == 0 ? server_.bind_to_any_port(host) : (server_.bind_to_port(host, port) ? port : -1);
    if (port_ <= 0) throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port));
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return port_;
}

void fake_server::stop() {
    if (!thread_.joinable()) return;
    server_.stop();
    thread_.join();
}

void fake_server::set_faults(const fault_plan& plan) {
    std::lock_guard lock(mutex_);
    faults_ = plan;
}

httplib::Server::HandlerResponse fake_server::apply_faults(const Request& req, Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (req.path.rfind("/_fake/", 0) == 0) return R::Unhandled;
    int latency = 0, status = 0;
    bool drop = false;
    {
        std::lock_guard lock(mutex_);
        ++requests_;
        if (req.path.rfind(faults_.path, 0) == 0) {
            latency = faults_.latency_ms;
            if (faults_.drop_next > 0) {
                --faults_.drop_next;
                drop = true;
            } else if (faults_.fail_next > 0) {
                --faults_.fail_next;
                status = faults_.fail_status;
            } else if (faults_.fail_always != 0) {
                status = faults_.fail_always;
            }
            if (drop || status != 0) ++faults_injected_;
        }
    }
    if (latency > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency));
    if (drop) {
        // Headers promise a body that never comes: the client sees the connection close.
        res.set_content_provider(64, "application/json", [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
        return R::Handled;
    }
    if (status != 0) {
        error(res, status, "injected fault", req);
        return R::Handled;
    }
    return R::Unhandled;
}

// ---------------------------------------------------------------------------------------------
// ThingsBoard
fake_thingsboard::fake_thingsboard(thingsboard_options options) : options_(std::move(options)) {
    server_.Post("/api/auth/login", [this](const Request& req, Response& res) {
        json j = parse_or_null(req.body);
        std::lock_guard lock(mutex_);
        if (!j.is_object() || j.value("username", "") != options_.username || j.value("password", "") != options_.password) {
            ++auth_failures_;
            return tb_error(res, 401, 10, "Invalid username or password");
        }
        ++logins_;
        res.set_content(issue_pair(options_.username).dump(), "application/json");
    });
    server_.Post("/api/auth/token", [this](const Request& req, Response& res) {
        json j = parse_or_null(req.body);
        std::lock_guard lock(mutex_);
        std::string token = j.is_object() ? j.value("refreshToken", "") : "";
        auto it = refresh_tokens_.find(token);
        if (it == refresh_tokens_.end()) return tb_error(res, 401, 10, "Invalid username or password");
        if (it->second < now_s()) return tb_error(res, 401, 11, "Token has expired");
        ++refreshes_;
        res.set_content(issue_pair(options_.username).dump(), "application/json");
    });
    server_.Get("/api/tenant/devices", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        auto it = devices_.find(req.get_param_value("deviceName"));
        if (it == devices_.end()) return tb_error(res, 404, 32, "Requested item wasn't found!");
        res.set_content(device_json(it->second).dump(), "application/json");
    });
    server_.Post("/api/device-with-credentials", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        json j = parse_or_null(req.body);
        if (!j.is_object()) return tb_error(res, 400, 30, "Invalid request body");
        const json& device = j.contains("device") ? j["device"] : json();
        const json& creds = j.contains("credentials") ? j["credentials"] : json();
        if (!device.is_object() || !creds.is_object()) return tb_error(res, 400, 31, "Validation error: device must not be null, credentials must not be null");
        std::string name = device.value("name", "");
        if (name.empty()) return tb_error(res, 400, 31, "Device name should be specified!");
        if (devices_.count(name) != 0) {
            ++name_conflicts_;
            return tb_error(res, 400, 31, "Device with such name already exists!");
        }
        if (creds.value("credentialsType", "") != "X509_CERTIFICATE") return tb_error(res, 400, 31, "Unsupported credentials type in this fake");
        std::string value = bare_base64(creds.value("credentialsValue", ""));
        if (!is_base64(value)) return tb_error(res, 400, 31, "Failed to decode the certificate");
        std::string hash = sha3_hex(value);
        if (credentials_owner_.count(hash) != 0) return tb_error(res, 400, 31, "Device credentials are already assigned to another device!");
        device_record d;
        d.id = random_uuid();
        d.name = name;
        d.type = device.value("type", "default");
        d.created = now_ms();
        d.credentials_id_uuid = random_uuid();
        d.credentials_value = value;
        d.credentials_hash = hash;
        credentials_owner_[hash] = name;
        names_by_id_[d.id] = name;
        ++creates_;
        res.set_content(device_json(d).dump(), "application/json");
        devices_.emplace(name, std::move(d));
    });
    server_.Get(R"(/api/device/([^/]+)/credentials)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        auto id = names_by_id_.find(req.matches[1].str());
        if (id == names_by_id_.end()) return tb_error(res, 404, 32, "Requested item wasn't found!");
        res.set_content(credentials_json(devices_.at(id->second)).dump(), "application/json");
    });
    server_.Post("/api/device/credentials", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        json j = parse_or_null(req.body);
        if (!j.is_object() || !j.contains("deviceId") || !j["deviceId"].is_object()) return tb_error(res, 400, 30, "Invalid request body");
        auto id = names_by_id_.find(j["deviceId"].value("id", ""));
        if (id == names_by_id_.end()) return tb_error(res, 404, 32, "Requested item wasn't found!");
        device_record& d = devices_.at(id->second);
        if (!j.contains("id") || !j["id"].is_object() || j["id"].value("id", "") != d.credentials_id_uuid) {
            return tb_error(res, 400, 31, "Unable to update non-existent device credentials!");
        }
        if (j.value("credentialsType", "") != "X509_CERTIFICATE") return tb_error(res, 400, 31, "Unsupported credentials type in this fake");
        std::string value = bare_base64(j.value("credentialsValue", ""));
        if (!is_base64(value)) return tb_error(res, 400, 31, "Failed to decode the certificate");
        std::string hash = sha3_hex(value);
        if (auto owner = credentials_owner_.find(hash); owner != credentials_owner_.end() && owner->second != d.name) {
            return tb_error(res, 400, 31, "Device credentials are already assigned to another device!");
        }
        credentials_owner_.erase(d.credentials_hash);
        d.credentials_value = value;
        d.credentials_hash = hash;
        ++d.credentials_version;
        credentials_owner_[hash] = d.name;
        ++credential_updates_;
        res.set_content(credentials_json(d).dump(), "application/json");
    });
    server_.Post(R"(/api/rule-engine/([A-Z_]+)/([^/]+)/(\d+))", [this](const Request& req, Response& res) {
        int timeout_ms = 0;
        {
            std::lock_guard lock(mutex_);
            if (!authorized(req, res)) return;
            if (options_.rule_engine == "absent") return tb_error(res, 404, 32, "Requested item wasn't found!");
            json body = parse_or_null(req.body);
            if (body.is_null() && req.body != "null") return tb_error(res, 400, 30, "Invalid request body");
            auto id = names_by_id_.find(req.matches[2].str());
            if (req.matches[1] != "DEVICE" || id == names_by_id_.end()) {
                res.status = 403;
                res.set_content("You don't have permission to perform this operation!", "text/plain");
                return;
            }
            devices_.at(id->second).messages.push_back(body);
            ++rule_engine_messages_;
            if (options_.rule_engine == "reply") {
                res.set_content(R"({"ack":true})", "application/json");
                return;
            }
            timeout_ms = std::min(std::stoi(req.matches[3].str()), 2000);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
        res.status = 408;
    });
    server_.Post("/_fake/expire_tokens", [this](const Request&, Response& res) {
        expire_tokens();
        res.set_content("{}", "application/json");
    });
    server_.Get(R"(/_fake/devices/([^/]+))", [this](const Request& req, Response& res) {
        json d = device(req.matches[1].str());
        if (d.is_null()) res.status = 404;
        res.set_content(d.dump(), "application/json");
    });
}

void fake_thingsboard::tb_error(Response& res, int status, int code, const std::string& message) const {
    res.status = status;
    res.set_content(json{{"status", status}, {"message", message}, {"errorCode", code}, {"timestamp", now_ms()}}.dump(),
                    "application/json");
}

void fake_thingsboard::error(Response& res, int status, const std::string& message, const Request&) {
    int code = status == 429 ? 33 : status == 401 ? 10 : status == 403 ? 20 : status == 404 ? 32 : status >= 500 ? 2 : 31;
    tb_error(res, status, code, message);
}

bool fake_thingsboard::authorized(const Request& req, Response& res) {
    std::string header = req.get_header_value("X-Authorization");
    if (header.empty()) header = req.get_header_value("Authorization");
    if (header.size() <= 7) {  // JwtHeaderTokenExtractor drops the first 7 characters ("Bearer ")
        ++auth_failures_;
        tb_error(res, 401, 10, "Authentication failed");
        return false;
    }
    auto it = access_tokens_.find(header.substr(7));
    if (it == access_tokens_.end()) {
        ++auth_failures_;
        tb_error(res, 401, 10, "Invalid username or password");
        return false;
    }
    if (it->second < now_s()) {
        ++auth_failures_;
        tb_error(res, 401, 11, "Token has expired");
        return false;
    }
    return true;
}

json fake_thingsboard::issue_pair(const std::string& user) {
    auto token = [&](std::chrono::seconds ttl, const char* kind) {
        const std::int64_t iat = now_s(), exp = iat + ttl.count();
        json payload{{"sub", user}, {"scopes", json::array({kind})}, {"iss", "thingsboard.io"},
                     {"iat", iat},  {"exp", exp},                   {"jti", std::to_string(++token_serial_)}};
        std::string t = base64url(R"({"alg":"HS512"})") + "." + base64url(payload.dump()) + "." +
                        base64url(random_uuid());
        return std::pair{t, exp};
    };
    auto [access, access_exp] = token(options_.access_ttl, "TENANT_ADMIN");
    auto [refresh, refresh_exp] = token(options_.refresh_ttl, "REFRESH_TOKEN");
    access_tokens_[access] = access_exp;
    refresh_tokens_[refresh] = refresh_exp;
    return {{"token", access}, {"refreshToken", refresh}};
}

void fake_thingsboard::expire_tokens() {
    std::lock_guard lock(mutex_);
    for (auto& [token, exp] : access_tokens_) exp = 0;
}

json fake_thingsboard::device_json(const device_record& d) const {
    return {{"id", {{"entityType", "DEVICE"}, {"id", d.id}}},
            {"createdTime", d.created},
            {"tenantId", {{"entityType", "TENANT"}, {"id", "1e2d3c4b-0000-1000-8000-000000000001"}}},
            {"customerId", {{"entityType", "CUSTOMER"}, {"id", "13814000-1dd2-11b2-8080-808080808080"}}},
            {"name", d.name},
            {"type", d.type},
            {"label", nullptr},
            {"deviceProfileId", {{"entityType", "DEVICE_PROFILE"}, {"id", "9d9588c0-06c9-11ee-b618-19be30fdeb60"}}},
            {"additionalInfo", json::object()},
            {"version", 1}};
}

json fake_thingsboard::credentials_json(const device_record& d) const {
    return {{"id", {{"id", d.credentials_id_uuid}}},
            {"createdTime", d.created},
            {"deviceId", {{"entityType", "DEVICE"}, {"id", d.id}}},
            {"credentialsType", "X509_CERTIFICATE"},
            {"credentialsId", d.credentials_hash},
            {"credentialsValue", d.credentials_value},
            {"version", d.credentials_version}};
}

json fake_thingsboard::device(const std::string& name) const {
    std::lock_guard lock(mutex_);
    auto it = devices_.find(name);
    if (it == devices_.end()) return nullptr;
    json j = device_json(it->second);
    j["credentials"] = credentials_json(it->second);
    j["messages"] = it->second.messages;
    return j;
}

json fake_thingsboard::state() const {
    std::lock_guard lock(mutex_);
    return {{"devices", devices_.size()},
            {"creates", creates_},
            {"name_conflicts", name_conflicts_},
            {"credential_updates", credential_updates_},
            {"rule_engine_messages", rule_engine_messages_},
            {"logins", logins_},
            {"refreshes", refreshes_},
            {"auth_failures", auth_failures_},
            {"requests", requests_},
            {"faults_injected", faults_injected_}};
}

void fake_thingsboard::reset_state() {
    devices_.clear();
    names_by_id_.clear();
    credentials_owner_.clear();
    logins_ = refreshes_ = auth_failures_ = creates_ = name_conflicts_ = credential_updates_ = rule_engine_messages_ = 0;
    requests_ = faults_injected_ = 0;
}

// ---------------------------------------------------------------------------------------------
// hawkBit
fake_hawkbit::fake_hawkbit(hawkbit_options options) : options_(std::move(options)) {
    server_.Post("/rest/v1/targets", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        std::string type = req.get_header_value("Content-Type");
        if (type.rfind("application/json", 0) != 0 && type.rfind("application/hal+json", 0) != 0) {
            res.status = 415;
            res.set_content(json{{"timestamp", now_ms()}, {"status", 415}, {"error", "Unsupported Media Type"}, {"path", req.path}}.dump(),
                            "application/json");
            return;
        }
        json body = parse_or_null(req.body);
        const std::string prefix = "hawkbit.server.error.";
        if (!body.is_array()) {
            return exception_info(res, 400, "org.springframework.http.converter.HttpMessageNotReadableException",
                                  prefix + "rest.body.notReadable", "The given request body is not well formed");
        }
        for (const json& t : body) {
            std::string id = t.is_object() ? t.value("controllerId", "") : "";
            bool valid = !id.empty() && id.size() <= 256 &&
                         std::none_of(id.begin(), id.end(), [](unsigned char c) { return std::isspace(c); });
            if (!valid) {
                return exception_info(res, 400, "jakarta.validation.ConstraintViolationException",
                                      prefix + "repo.constraintViolation", "controllerId: must match \"[\\S]*\"");
            }
        }
        // All or nothing, like the transactional createTargets.
        for (const json& t : body) {
            if (targets_.count(t["controllerId"].get<std::string>()) != 0) {
                ++conflicts_;
                return exception_info(res, 409, "org.eclipse.hawkbit.repository.exception.EntityAlreadyExistsException",
                                      prefix + (options_.legacy_error_codes ? "repo.entitiyAlreayExists" : "repo.entityAlreadyExists"),
                                      "The given entity already exists in database");
            }
        }
        json created = json::array();
        for (const json& t : body) {
            const std::string id = t["controllerId"].get<std::string>();
            json target{{"createdBy", options_.username}, {"createdAt", now_ms()}, {"lastModifiedBy", options_.username},
                        {"lastModifiedAt", now_ms()},     {"name", t.value("name", id.substr(0, 128))},
                        {"controllerId", id},             {"updateStatus", "unknown"},
                        {"requestAttributes", true}};
            if (t.contains("description")) target["description"] = t["description"];
            targets_[id] = target;
            ++creates_;
            created.push_back(target_json(target, req));
        }
        res.status = 201;
        res.set_content(created.dump(), req.get_header_value("Accept") == "application/json" ? "application/json"
                                                                                                : "application/hal+json");
    });
    server_.Get(R"(/rest/v1/targets/([^/]+))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        auto it = targets_.find(req.matches[1].str());
        if (it == targets_.end()) {
            res.status = 404;
            json info{{"exceptionClass", "org.eclipse.hawkbit.repository.exception.EntityNotFoundException"},
                      {"errorCode", "hawkbit.server.error.repo.entityNotFound"},
                      {"message", "Target with given identifier {" + std::string(req.matches[1].str()) + "} does not exist."},
                      {"info", {{"type", "Target"}, {"entityId", std::string(req.matches[1].str())}}}};
            res.set_content(info.dump(), "application/json");
            return;
        }
        res.set_content(target_json(it->second, req).dump(), "application/json");
    });
}

bool fake_hawkbit::authorized(const Request& req, Response& res) {
    const std::string expected =
        "Basic " + devicegate::base64_encode(options_.username + ":" + options_.password);
    if (req.get_header_value("Authorization") == expected) return true;
    ++auth_failures_;
    res.status = 401;
    res.set_header("WWW-Authenticate", "Basic realm=\"hawkBit\"");
    res.set_content(json{{"timestamp", now_ms()}, {"status", 401}, {"error", "Unauthorized"}, {"path", req.path}}.dump(),
                    "application/json");
    return false;
}

void fake_hawkbit::exception_info(Response& res, int status, const std::string& exception_class, const std::string& code,
                                  const std::string& message) const {
    res.status = status;
    res.set_content(json{{"exceptionClass", exception_class}, {"errorCode", code}, {"message", message}}.dump(),
                    "application/json");
}

void fake_hawkbit::error(Response& res, int status, const std::string& message, const Request& req) {
    if (status == 429) {
        return exception_info(res, 429, "org.eclipse.hawkbit.repository.exception.AssignmentQuotaExceededException",
                              "hawkbit.server.error.quota.tooManyRequests", message);
    }
    // Spring's default error body for everything hawkBit does not map itself.
    res.status = status;
    res.set_content(json{{"timestamp", now_ms()}, {"status", status}, {"error", message}, {"path", req.path}}.dump(),
                    "application/json");
}

json fake_hawkbit::target_json(const json& t, const Request& req) const {
    json out = t;
    out["_links"] = {{"self", {{"href", "http://" + req.get_header_value("Host") + "/rest/v1/targets/" +
                                            t["controllerId"].get<std::string>()}}}};
    return out;
}

json fake_hawkbit::state() const {
    std::lock_guard lock(mutex_);
    return {{"targets", targets_.size()}, {"creates", creates_},     {"conflicts", conflicts_},
            {"auth_failures", auth_failures_}, {"requests", requests_}, {"faults_injected", faults_injected_}};
}

void fake_hawkbit::reset_state() {
    targets_.clear();
    creates_ = conflicts_ = auth_failures_ = requests_ = faults_injected_ = 0;
}

}  // namespace devicegate::fakes
