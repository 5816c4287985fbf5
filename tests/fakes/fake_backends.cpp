#include "fake_backends.hpp"

#include "devicegate/pki.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <ctime>
#include <iomanip>
#include <optional>
#include <sstream>
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

/// base64url without padding -> bytes; nullopt if not base64url.
std::optional<std::string> base64url_decode(std::string text) {
    std::replace(text.begin(), text.end(), '-', '+');
    std::replace(text.begin(), text.end(), '_', '/');
    if (text.empty() || text.size() % 4 == 1) return std::nullopt;
    while (text.size() % 4 != 0) text.push_back('=');
    std::string out(text.size() / 4 * 3, '\0');
    int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    out.resize(static_cast<std::size_t>(n) - static_cast<std::size_t>(std::count(text.end() - 2, text.end(), '=')));
    return out;
}

/// A structurally valid JWS (three parts, a JSON header and payload): one whose signature does
/// not verify is "expired" to ThingsBoard (401/11), anything else is "invalid" (401/10)
/// (JwtTokenFactory.parseTokenClaims).
bool looks_like_jwt(const std::string& token) {
    auto first = token.find('.'), second = token.find('.', first + 1);
    if (first == std::string::npos || second == std::string::npos || token.find('.', second + 1) != std::string::npos) return false;
    auto header = base64url_decode(token.substr(0, first));
    auto payload = base64url_decode(token.substr(first + 1, second - first - 1));
    return header && payload && parse_or_null(*header).is_object() && parse_or_null(*payload).is_object();
}

/// ThingsBoard's PageData for ?pageSize=&page= over `all`.
json tb_page(const json& all, const Request& req) {
    const std::size_t size = std::max(1, std::atoi(req.get_param_value("pageSize").c_str()));
    const std::size_t page = static_cast<std::size_t>(std::max(0, std::atoi(req.get_param_value("page").c_str())));
    json data = json::array();
    for (std::size_t i = page * size; i < all.size() && i < (page + 1) * size; ++i) data.push_back(all[i]);
    const std::size_t pages = (all.size() + size - 1) / size;
    return {{"data", data}, {"totalPages", pages}, {"totalElements", all.size()}, {"hasNext", page + 1 < pages}};
}

bool contains_ci(std::string haystack, std::string needle) {
    auto lower = [](std::string& t) { std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); }); };
    lower(haystack);
    lower(needle);
    return haystack.find(needle) != std::string::npos;
}

constexpr const char* default_profile_id = "9d9588c0-06c9-11ee-b618-19be30fdeb60";

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
        p.retry_after = j.value("retry_after", std::string());
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
        if (!admit(req, res)) return R::Handled;
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
        std::lock_guard lock(mutex_);
        if (!faults_.retry_after.empty()) res.set_header("Retry-After", faults_.retry_after);
        return R::Handled;
    }
    return R::Unhandled;
}

// ---------------------------------------------------------------------------------------------
// ThingsBoard
fake_thingsboard::fake_thingsboard(thingsboard_options options) : options_(std::move(options)) {
    reset_state();
    add_login_routes();
    add_device_routes();
    add_credentials_routes();
    add_rule_engine_routes();
    add_attribute_routes();
    add_profile_and_customer_routes();
    add_control_routes();
}

void fake_thingsboard::add_login_routes() {
    server_.Post("/api/auth/login", [this](const Request& req, Response& res) { handle_login(req, res); });
    server_.Post("/api/auth/token", [this](const Request& req, Response& res) {
        json j = parse_or_null(req.body);
        std::lock_guard lock(mutex_);
        std::string token = j.is_object() ? j.value("refreshToken", "") : "";
        auto it = refresh_tokens_.find(token);
        if (it == refresh_tokens_.end()) {
            // RefreshTokenAuthenticationProvider -> parseTokenClaims: a bad signature is "expired".
            if (looks_like_jwt(token)) return tb_error(res, 401, 11, "Token has expired");
            return tb_error(res, 401, 10, "Invalid username or password");
        }
        if (it->second < now_s()) return tb_error(res, 401, 11, "Token has expired");
        ++refreshes_;
        res.set_content(issue_pair(options_.username).dump(), "application/json");
    });
}

// DefaultSystemSecurityService.validateUserCredentials and ThingsboardErrorResponseHandler:
// a wrong password counts; the attempt that goes beyond maxFailedLoginAttempts disables the
// account ("locked"); a disabled account then answers "not active" even to the right password.
void fake_thingsboard::handle_login(const Request& req, Response& res) {
    json j = parse_or_null(req.body);
    std::lock_guard lock(mutex_);
    if (!j.is_object() || j.value("username", "") != options_.username) {
        ++auth_failures_;  // UsernameNotFoundException: nothing to count against
        return tb_error(res, 401, 10, "Invalid username or password");
    }
    if (j.value("password", "") != options_.password) {
        ++auth_failures_;
        ++failed_logins_;
        const int max = options_.max_failed_login_attempts;
        if (max > 0 && failed_logins_ > max && account_enabled_) {
            account_enabled_ = false;
            return tb_error(res, 401, 10, "User account is locked due to security policy");
        }
        return tb_error(res, 401, 10, "Invalid username or password");
    }
    if (!account_enabled_) {
        ++auth_failures_;
        return tb_error(res, 401, 10, "User account is not active");
    }
    failed_logins_ = 0;
    ++logins_;
    res.set_content(issue_pair(options_.username).dump(), "application/json");
}

void fake_thingsboard::add_device_routes() {
    server_.Get("/api/tenant/devices", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (req.has_param("deviceName")) {
            auto it = devices_.find(req.get_param_value("deviceName"));
            if (it == devices_.end()) return tb_error(res, 404, 32, "Requested item wasn't found!");
            return res.set_content(device_json(it->second).dump(), "application/json");
        }
        handle_device_page(req, res);
    });
    server_.Post("/api/device-with-credentials", [this](const Request& req, Response& res) { handle_create(req, res); });
    server_.Get(R"(/api/device/([0-9a-fA-F-]{36}))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (device_record* d = find_or_404(req.matches[1].str(), res)) res.set_content(device_json(*d).dump(), "application/json");
    });
    server_.Delete(R"(/api/device/([0-9a-fA-F-]{36}))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        device_record* d = find_or_404(req.matches[1].str(), res);
        if (d == nullptr) return;
        erase_device(*d);
        res.status = 200;  // DeviceController.deleteDevice: 200, empty body
    });
}

void fake_thingsboard::erase_device(const device_record& d) {
    credentials_owner_.erase(d.credentials_hash);
    names_by_id_.erase(d.id);
    ++deletes_;
    devices_.erase(d.name);  // last: `d` is gone after this
}

std::string fake_thingsboard::add_device_profile(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto [it, created] = profiles_.try_emplace(name, "");
    if (created) it->second = random_uuid();
    return it->second;
}

bool fake_thingsboard::delete_device(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto it = devices_.find(name);
    if (it == devices_.end()) return false;
    erase_device(it->second);
    return true;
}

void fake_thingsboard::handle_create(const Request& req, Response& res) {
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
    std::string profile_error;
    std::string profile_id = resolve_profile(device, profile_error);
    if (profile_id.empty()) return tb_error(res, 400, 31, profile_error);
    device_record d;
    d.id = random_uuid();
    d.name = name;
    d.profile_id = profile_id;
    for (const auto& [profile, id] : profiles_) {
        if (id == profile_id) d.type = profile;  // DeviceServiceImpl: type := the profile's name
    }
    if (device.contains("label") && device["label"].is_string()) d.label = device["label"].get<std::string>();
    d.created = now_ms();
    d.credentials_id_uuid = random_uuid();
    d.credentials_value = value;
    d.credentials_hash = hash;
    credentials_owner_[hash] = name;
    names_by_id_[d.id] = name;
    ++creates_;
    res.set_content(device_json(d).dump(), "application/json");
    devices_.emplace(name, std::move(d));
}

// DeviceServiceImpl.saveDevice: an explicit deviceProfileId must exist; otherwise the profile is
// found *or created* by the device's `type`, and an empty type means the default profile.
std::string fake_thingsboard::resolve_profile(const json& device, std::string& error) {
    if (device.contains("deviceProfileId") && device["deviceProfileId"].is_object()) {
        const std::string id = device["deviceProfileId"].value("id", "");
        for (const auto& [name, pid] : profiles_) {
            if (pid == id) return pid;
        }
        error = "Device is referencing non existing device profile!";
        return "";
    }
    std::string type = device.contains("type") && device["type"].is_string() ? device["type"].get<std::string>() : "";
    if (type.empty()) return profiles_.at("default");
    auto [it, created] = profiles_.try_emplace(type, "");
    if (created) {
        it->second = random_uuid();
        ++profiles_created_;
    }
    return it->second;
}

void fake_thingsboard::add_credentials_routes() {
    server_.Get(R"(/api/device/([^/]+)/credentials)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (device_record* d = find_or_404(req.matches[1].str(), res)) res.set_content(credentials_json(*d).dump(), "application/json");
    });
    server_.Post("/api/device/credentials", [this](const Request& req, Response& res) { handle_credentials_update(req, res); });
}

void fake_thingsboard::handle_credentials_update(const Request& req, Response& res) {
    std::lock_guard lock(mutex_);
    if (!authorized(req, res)) return;
    json j = parse_or_null(req.body);
    if (!j.is_object() || !j.contains("deviceId") || !j["deviceId"].is_object()) return tb_error(res, 400, 30, "Invalid request body");
    device_record* found = find_or_404(j["deviceId"].value("id", ""), res);
    if (found == nullptr) return;
    device_record& d = *found;
    if (!j.contains("id") || !j["id"].is_object() || j["id"].value("id", "") != d.credentials_id_uuid) {
        return tb_error(res, 400, 31, "Unable to update non-existent device credentials!");
    }
    const std::string type = j.value("credentialsType", "");
    if (type != "X509_CERTIFICATE" && type != "ACCESS_TOKEN") return tb_error(res, 400, 31, "Unsupported credentials type in this fake");
    // DeviceCredentialsServiceImpl.formatCredentials: X.509 -> id = SHA3-256 of the bare base64;
    // ACCESS_TOKEN -> the credentialsId is the token, the value is not used.
    std::string value, hash;
    if (type == "X509_CERTIFICATE") {
        value = bare_base64(j.value("credentialsValue", ""));
        if (!is_base64(value)) return tb_error(res, 400, 31, "Failed to decode the certificate");
        hash = sha3_hex(value);
    } else {
        hash = j.contains("credentialsId") && j["credentialsId"].is_string() ? j["credentialsId"].get<std::string>() : "";
        if (hash.empty()) return tb_error(res, 400, 31, "Device credentials id should be specified!");
    }
    if (auto owner = credentials_owner_.find(hash); owner != credentials_owner_.end() && owner->second != d.name) {
        return tb_error(res, 400, 31, "Device credentials are already assigned to another device!");
    }
    // JpaAbstractDao.doSave: no version = overwrite; a version other than the stored one is an
    // OptimisticLockException -> EntityVersionMismatchException -> 409, VERSION_CONFLICT (35).
    if (j.contains("version") && !j["version"].is_null() &&
        (!j["version"].is_number_integer() || j["version"].get<std::int64_t>() != d.credentials_version)) {
        ++version_conflicts_;
        return tb_error(res, 409, 35, "Device credentials was already changed by someone else");
    }
    credentials_owner_.erase(d.credentials_hash);
    d.credentials_type = type;
    d.credentials_value = value;
    d.credentials_hash = hash;
    ++d.credentials_version;
    credentials_owner_[hash] = d.name;
    ++credential_updates_;
    res.set_content(credentials_json(d).dump(), "application/json");
}

void fake_thingsboard::add_rule_engine_routes() {
    auto handler = [this](const Request& req, Response& res) { handle_rule_engine(req, res); };
    server_.Post(R"(/api/rule-engine/([A-Z_]+)/([^/]+)/(\d+))", handler);
    server_.Post(R"(/api/rule-engine/([A-Z_]+)/([^/]+))", handler);
}

void fake_thingsboard::handle_rule_engine(const Request& req, Response& res) {
    std::chrono::milliseconds wait{0};
    {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (options_.rule_engine == "absent") return tb_error(res, 404, 32, "Requested item wasn't found!");
        json body = parse_or_null(req.body);
        if (body.is_null() && req.body != "null") return tb_error(res, 400, 31, "Invalid request body");
        auto id = names_by_id_.find(req.matches[2].str());
        if (req.matches[1] != "DEVICE" || id == names_by_id_.end()) return access_validator_404(req, res);
        devices_.at(id->second).messages.push_back(body);
        ++rule_engine_messages_;
        if (options_.rule_engine == "reply") return res.set_content(R"({"ack":true})", "application/json");
        ++rule_engine_timeouts_;
        // RuleEngineController: the {timeout} segment in ms, DEFAULT_TIMEOUT (10 s) without one.
        wait = std::chrono::milliseconds(req.matches.size() > 3 ? std::stoll(req.matches[3].str()) : 10000);
        if (options_.rule_engine_max_wait.count() > 0) wait = std::min(wait, options_.rule_engine_max_wait);
    }
    std::this_thread::sleep_for(wait);
    res.status = 408;  // ResponseEntity(REQUEST_TIMEOUT): no body
}

void fake_thingsboard::access_validator_404(const Request& req, Response& res) {
    // EntityNotFoundException.toErrorResponseEntity: ResponseEntity<String>(message, NOT_FOUND).
    // Spring writes a String with the negotiated type: text/plain, or application/json when the
    // client asks for JSON -- the body is plain text either way.
    res.status = 404;
    const bool wants_json = req.get_header_value("Accept").find("application/json") != std::string::npos;
    res.set_content("Device with requested id wasn't found!", wants_json ? "application/json" : "text/plain;charset=UTF-8");
}

void fake_thingsboard::add_attribute_routes() {
    auto handler = [this](const Request& req, Response& res) { handle_attributes(req, res); };
    server_.Post(R"(/api/plugins/telemetry/([A-Z_]+)/([^/]+)/attributes/([A-Za-z_]+))", handler);
    server_.Get(R"(/api/plugins/telemetry/DEVICE/([^/]+)/values/attributes/SERVER_SCOPE)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        auto id = names_by_id_.find(req.matches[1].str());
        if (id == names_by_id_.end()) return access_validator_404(req, res);
        json out = json::array();
        for (const auto& [key, v] : devices_.at(id->second).server_attributes.items()) {
            out.push_back({{"key", key}, {"value", v["value"]}, {"lastUpdateTs", v["lastUpdateTs"]}});
        }
        res.set_content(out.dump(), "application/json");
    });
}

// TelemetryController.saveAttributes: checks in this order, each failure a plain-text 400; then
// AccessValidator (plain-text 404 for a missing device); then 200 with an empty body.
void fake_thingsboard::handle_attributes(const Request& req, Response& res) {
    std::lock_guard lock(mutex_);
    if (!authorized(req, res)) return;
    auto plain = [&](int status, const std::string& text) {
        res.status = status;
        res.set_content(text, "text/plain;charset=UTF-8");
    };
    const std::string scope = req.matches[3].str();
    if (scope != "SERVER_SCOPE" && scope != "SHARED_SCOPE" && scope != "CLIENT_SCOPE") return tb_error(res, 400, 31, "Invalid request body");
    json body = parse_or_null(req.body);
    if (body.is_null() && req.body != "null") return tb_error(res, 400, 31, "Invalid request body");
    if (scope == "CLIENT_SCOPE") return plain(400, "Invalid scope: CLIENT_SCOPE");
    if (!body.is_object()) return plain(400, "Request is not a JSON object");
    json kept = json::object();
    for (const auto& [key, value] : body.items()) {
        if (!value.is_null()) kept[key] = value;  // extractRequestAttributes skips nulls
    }
    if (kept.empty()) return plain(400, "No attributes data found in request body!");
    for (const auto& [key, value] : kept.items()) {
        if (key.find_first_not_of(' ') == std::string::npos) return plain(400, "Key cannot be empty or contains only spaces");
    }
    auto id = names_by_id_.find(req.matches[2].str());
    if (req.matches[1] != "DEVICE" || id == names_by_id_.end()) return access_validator_404(req, res);
    if (scope == "SHARED_SCOPE") return res.set_content("", "application/json");  // accepted, not kept here
    device_record& d = devices_.at(id->second);
    for (const auto& [key, value] : kept.items()) d.server_attributes[key] = {{"value", value}, {"lastUpdateTs", now_ms()}};
    ++attribute_writes_;
    res.status = 200;
}

void fake_thingsboard::add_profile_and_customer_routes() {
    auto profile_info = [](const std::string& name, const std::string& id) {
        return json{{"id", {{"entityType", "DEVICE_PROFILE"}, {"id", id}}}, {"name", name}, {"type", "DEFAULT"},
                    {"transportType", "DEFAULT"}, {"image", nullptr}, {"defaultDashboardId", nullptr}};
    };
    server_.Get("/api/deviceProfileInfos", [this, profile_info](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        json all = json::array();
        for (const auto& [name, id] : profiles_) {
            if (!req.has_param("textSearch") || contains_ci(name, req.get_param_value("textSearch"))) all.push_back(profile_info(name, id));
        }
        res.set_content(tb_page(all, req).dump(), "application/json");
    });
    server_.Get("/api/deviceProfile/names", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        json all = json::array();
        for (const auto& [name, id] : profiles_) all.push_back({{"id", {{"entityType", "DEVICE_PROFILE"}, {"id", id}}}, {"name", name}});
        res.set_content(all.dump(), "application/json");
    });
    server_.Get("/api/deviceProfileInfo/default", [this, profile_info](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        res.set_content(profile_info("default", profiles_.at("default")).dump(), "application/json");
    });
    auto customer_json = [](const std::pair<const std::string, std::string>& c) {
        return json{{"id", {{"entityType", "CUSTOMER"}, {"id", c.second}}}, {"title", c.first}}.dump();
    };
    // BaseController.checkCustomerId: JSON 404 when there is none; nullptr after writing it.
    auto by_id = [this](const std::string& id, Response& res) -> const std::pair<const std::string, std::string>* {
        auto it = std::find_if(customers_.begin(), customers_.end(), [&](const auto& c) { return c.second == id; });
        if (it != customers_.end()) return &*it;
        tb_error(res, 404, 32, "Customer with id [" + id + "] is not found");
        return nullptr;
    };
    server_.Get("/api/tenant/customers", [this, customer_json](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        auto it = customers_.find(req.get_param_value("customerTitle"));
        if (it == customers_.end()) return tb_error(res, 404, 32, "Requested item wasn't found!");
        res.set_content(customer_json(*it), "application/json");
    });
    server_.Get(R"(/api/customer/([0-9a-fA-F-]{36}))", [this, customer_json, by_id](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (const auto* c = by_id(req.matches[1].str(), res)) res.set_content(customer_json(*c), "application/json");
    });
    server_.Post(R"(/api/customer/([^/]+)/device/([^/]+))", [this, by_id](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        const auto* c = by_id(req.matches[1].str(), res);
        if (c == nullptr) return;
        device_record* d = find_or_404(req.matches[2].str(), res);
        if (d == nullptr) return;
        d->customer_id = c->second;
        ++customer_assignments_;
        res.set_content(device_json(*d).dump(), "application/json");
    });
}

void fake_thingsboard::add_control_routes() {
    server_.Post("/_fake/expire_tokens", [this](const Request&, Response& res) {
        expire_tokens();
        res.set_content("{}", "application/json");
    });
    server_.Post("/_fake/rotate_signing_key", [this](const Request&, Response& res) {
        rotate_signing_key();
        res.set_content("{}", "application/json");
    });
    server_.Post("/_fake/device_profiles", [this](const Request& req, Response& res) {
        json body = parse_or_null(req.body);
        const std::string name = body.is_object() ? body.value("name", "") : "";
        res.status = name.empty() ? 400 : 200;
        res.set_content(json{{"id", name.empty() ? "" : add_device_profile(name)}}.dump(), "application/json");
    });
    server_.Post("/_fake/unlock", [this](const Request&, Response& res) {
        std::lock_guard lock(mutex_);
        account_enabled_ = true;
        failed_logins_ = 0;
        res.set_content("{}", "application/json");
    });
    server_.Get(R"(/_fake/devices/([^/]+))", [this](const Request& req, Response& res) {
        json d = device(req.matches[1].str());
        if (d.is_null()) res.status = 404;
        res.set_content(d.dump(), "application/json");
    });
    server_.Post(R"(/_fake/devices/([^/]+)/delete)", [this](const Request& req, Response& res) {
        res.status = delete_device(req.matches[1].str()) ? 200 : 404;
        res.set_content("{}", "application/json");
    });
}

fake_thingsboard::device_record* fake_thingsboard::find_or_404(const std::string& id, Response& res) {
    auto it = names_by_id_.find(id);
    if (it != names_by_id_.end()) return &devices_.at(it->second);
    // BaseController.checkEntityId: checkNotNull(entity, "<Type> with id [<id>] is not found").
    tb_error(res, 404, 32, "Device with id [" + id + "] is not found");
    return nullptr;
}

void fake_thingsboard::tb_error(Response& res, int status, int code, const std::string& message) const {
    res.status = status;
    res.set_content(json{{"status", status}, {"message", message}, {"errorCode", code}, {"timestamp", now_ms()}}.dump(),
                    "application/json");
}

void fake_thingsboard::error(Response& res, int status, const std::string& message, const Request&) {
    int code = status == 429 ? 33 : status == 401 ? 10 : status == 403 ? 20 : status == 404 ? 32 : status == 409 ? 35
             : status >= 500 ? 2 : 31;
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
    const std::string token = header.substr(7);
    auto it = access_tokens_.find(token);
    if (it == access_tokens_.end()) {
        ++auth_failures_;
        // JwtTokenFactory.parseTokenClaims: SignatureException -> JwtExpiredTokenException (11);
        // a malformed token -> BadCredentialsException (10).
        if (looks_like_jwt(token)) tb_error(res, 401, 11, "Token has expired");
        else tb_error(res, 401, 10, "Invalid username or password");
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

void fake_thingsboard::rotate_signing_key() {
    std::lock_guard lock(mutex_);
    access_tokens_.clear();
    refresh_tokens_.clear();
}

json fake_thingsboard::device_json(const device_record& d) const {
    return {{"id", {{"entityType", "DEVICE"}, {"id", d.id}}},
            {"createdTime", d.created},
            {"tenantId", {{"entityType", "TENANT"}, {"id", "1e2d3c4b-0000-1000-8000-000000000001"}}},
            {"customerId", {{"entityType", "CUSTOMER"}, {"id", d.customer_id}}},
            {"name", d.name},
            {"type", d.type},
            {"label", d.label.empty() ? json(nullptr) : json(d.label)},
            {"deviceProfileId", {{"entityType", "DEVICE_PROFILE"}, {"id", d.profile_id}}},
            {"additionalInfo", json::object()},
            {"version", 1}};
}

json fake_thingsboard::credentials_json(const device_record& d) const {
    return {{"id", {{"id", d.credentials_id_uuid}}},
            {"createdTime", d.created},
            {"deviceId", {{"entityType", "DEVICE"}, {"id", d.id}}},
            {"credentialsType", d.credentials_type},
            {"credentialsId", d.credentials_hash},
            {"credentialsValue", d.credentials_type == "ACCESS_TOKEN" ? json(nullptr) : json(d.credentials_value)},
            {"version", d.credentials_version}};
}

json fake_thingsboard::device(const std::string& name) const {
    std::lock_guard lock(mutex_);
    auto it = devices_.find(name);
    if (it == devices_.end()) return nullptr;
    json j = device_json(it->second);
    j["credentials"] = credentials_json(it->second);
    j["messages"] = it->second.messages;
    j["server_attributes"] = it->second.server_attributes;
    return j;
}

json fake_thingsboard::state() const {
    std::lock_guard lock(mutex_);
    json profiles = json::array();
    for (const auto& [name, id] : profiles_) profiles.push_back(name);
    return {{"devices", devices_.size()},
            {"creates", creates_},
            {"deletes", deletes_},
            {"name_conflicts", name_conflicts_},
            {"credential_updates", credential_updates_},
            {"version_conflicts", version_conflicts_},
            {"rule_engine_mode", options_.rule_engine},
            {"rule_engine_messages", rule_engine_messages_},
            {"rule_engine_timeouts", rule_engine_timeouts_},
            {"attribute_writes", attribute_writes_},
            {"device_profiles", profiles},
            {"profiles_created", profiles_created_},
            {"customer_assignments", customer_assignments_},
            {"logins", logins_},
            {"refreshes", refreshes_},
            {"auth_failures", auth_failures_},
            {"failed_logins", failed_logins_},
            {"account_locked", !account_enabled_},
            {"requests", requests_},
            {"faults_injected", faults_injected_}};
}

void fake_thingsboard::reset_state() {
    devices_.clear();
    names_by_id_.clear();
    credentials_owner_.clear();
    profiles_ = {{"default", default_profile_id}};
    for (const auto& p : options_.device_profiles) profiles_.try_emplace(p, random_uuid());
    customers_.clear();
    for (const auto& c : options_.customers) customers_.try_emplace(c, random_uuid());
    failed_logins_ = 0;
    account_enabled_ = true;
    logins_ = refreshes_ = auth_failures_ = creates_ = name_conflicts_ = credential_updates_ = version_conflicts_ = 0;
    rule_engine_messages_ = rule_engine_timeouts_ = attribute_writes_ = deletes_ = profiles_created_ = customer_assignments_ = 0;
    requests_ = faults_injected_ = 0;
}

// ---------------------------------------------------------------------------------------------
// hawkBit
fake_hawkbit::fake_hawkbit(hawkbit_options options) : options_(std::move(options)) {
    reset_state();
    add_target_routes();
    add_metadata_routes();
    add_action_routes();
    add_type_and_tag_routes();
    add_control_routes();
}

// DosFilter (a servlet filter, so ahead of authentication): per client IP (X-Forwarded-For first, IpUtil), a counter per second (Caffeine,
// expireAfterWrite 1 s from the first request): the first request stores 0 and each later one
// is refused once the counter it increments is already above the maximum. 429, empty body.
bool fake_hawkbit::admit(const Request& req, Response& res) {
    if (!options_.dos_filter) return true;
    std::string ip = req.get_header_value("X-Forwarded-For");
    ip = ip.empty() ? req.remote_addr : ip.substr(0, ip.find(','));
    const bool read = req.method == "GET";
    dos_window& w = (read ? dos_reads_ : dos_writes_)[ip];
    const auto now = std::chrono::steady_clock::now();
    if (w.start == std::chrono::steady_clock::time_point{} || now - w.start >= std::chrono::seconds(1)) {
        w = {now, 0};
        return true;
    }
    if (w.count++ > (read ? options_.dos_max_read : options_.dos_max_write)) {
        ++dos_refusals_;
        res.status = 429;
        return false;
    }
    return true;
}

void fake_hawkbit::add_target_routes() {
    server_.Post("/rest/v1/targets", [this](const Request& req, Response& res) { handle_create(req, res); });
    server_.Get("/rest/v1/targets", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        handle_target_page(req, res);
    });
    server_.Get(R"(/rest/v1/targets/([^/]+))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (target_record* t = find_or_404(req.matches[1].str(), res)) res.set_content(target_json(*t, req).dump(), "application/json");
    });
    server_.Delete(R"(/rest/v1/targets/([^/]+))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        if (find_or_404(req.matches[1].str(), res) == nullptr) return;
        targets_.erase(req.matches[1].str());
        ++deletes_;
        res.status = 200;  // MgmtTargetResource.deleteTarget in 0.9.0: ResponseEntity.ok() (204 from 0.10)
    });
    server_.Get(R"(/rest/v1/targets/([^/]+)/tags)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        target_record* t = find_or_404(req.matches[1].str(), res);
        if (t == nullptr) return;
        json out = json::array();
        for (auto id : t->tags) out.push_back(tags_.at(id));
        res.set_content(out.dump(), "application/json");
    });
    server_.Post(R"(/rest/v1/targets/([^/]+)/targettype)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        json body;
        target_record* t = target_request(req, res, body);
        if (t == nullptr) return;
        const std::int64_t type = body.is_object() ? body.value("id", std::int64_t{0}) : 0;
        if (target_types_.count(type) == 0) return not_found(res, "TargetType", std::to_string(type));
        t->body["targetType"] = type;
        t->body["targetTypeName"] = target_types_.at(type)["name"];
        res.status = 200;
    });
}

void fake_hawkbit::handle_create(const Request& req, Response& res) {
    std::lock_guard lock(mutex_);
    if (!authorized(req, res)) return;
    json body;
    if (!json_body(req, res, body)) return;
    const std::string prefix = "hawkbit.server.error.";
    if (!body.is_array()) {
        return not_readable(res);
    }
    for (const json& t : body) {
        std::string id = t.is_object() ? t.value("controllerId", "") : "";
        bool valid = !id.empty() && id.size() <= 256 && std::none_of(id.begin(), id.end(), [](unsigned char c) { return std::isspace(c); });
        if (!valid) {
            return exception_info(res, 400, "jakarta.validation.ConstraintViolationException", prefix + "repo.constraintViolation",
                                  "controllerId: must match \"[\\S]*\"");
        }
        if (t.contains("targetType") && !t["targetType"].is_null() &&
            (!t["targetType"].is_number_integer() || target_types_.count(t["targetType"].get<std::int64_t>()) == 0)) {
            return not_found(res, "TargetType", t["targetType"].dump());
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
        target_record r;
        r.body = {{"createdBy", options_.username}, {"createdAt", now_ms()}, {"lastModifiedBy", options_.username},
                  {"lastModifiedAt", now_ms()},     {"name", t.value("name", id.substr(0, 128))},
                  {"controllerId", id},             {"updateStatus", "unknown"},
                  {"requestAttributes", true}};
        if (t.contains("description")) r.body["description"] = t["description"];
        if (t.contains("targetType") && t["targetType"].is_number_integer()) {
            r.body["targetType"] = t["targetType"];
            r.body["targetTypeName"] = target_types_.at(t["targetType"].get<std::int64_t>())["name"];
        }
        ++creates_;
        created.push_back(target_json(r, req));
        targets_[id] = std::move(r);
    }
    res.status = 201;
    res.set_content(created.dump(), req.get_header_value("Accept") == "application/json" ? "application/json" : "application/hal+json");
}

void fake_hawkbit::add_metadata_routes() {
    server_.Post(R"(/rest/v1/targets/([^/]+)/metadata)", [this](const Request& req, Response& res) { handle_metadata_create(req, res); });
    server_.Get(R"(/rest/v1/targets/([^/]+)/metadata)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        target_record* t = find_or_404(req.matches[1].str(), res);
        if (t == nullptr) return;
        json content = json::array();
        for (const auto& [k, v] : t->metadata) content.push_back({{"key", k}, {"value", v}});
        res.set_content(json{{"content", content}, {"total", content.size()}, {"size", content.size()}}.dump(), "application/json");
    });
    server_.Get(R"(/rest/v1/targets/([^/]+)/metadata/([^/]+))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        target_record* t = find_or_404(req.matches[1].str(), res);
        if (t == nullptr) return;
        auto it = t->metadata.find(req.matches[2].str());
        if (it == t->metadata.end()) return not_found(res, "Target metadata", req.matches[1].str() + ":" + req.matches[2].str());
        res.set_content(json{{"key", it->first}, {"value", it->second}}.dump(), "application/json");
    });
    server_.Put(R"(/rest/v1/targets/([^/]+)/metadata/([^/]+))", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        json body;
        target_record* t = target_request(req, res, body);
        if (t == nullptr) return;
        auto it = t->metadata.find(req.matches[2].str());
        if (it == t->metadata.end()) return not_found(res, "Target metadata", req.matches[1].str() + ":" + req.matches[2].str());
        if (!body.is_object() || !body.contains("value") || !body["value"].is_string()) {
            return exception_info(res, 400, "jakarta.validation.ConstraintViolationException", "hawkbit.server.error.repo.constraintViolation",
                                  "value: must not be null");
        }
        it->second = body["value"].get<std::string>();
        ++metadata_writes_;
        res.status = 200;
    });
}

// JpaTargetManagement.createMetadata: an existing key is a 409; more than the quota (counted
// after the merge) is AssignmentQuotaExceededException -> 403 (RestConfiguration), not 429.
void fake_hawkbit::handle_metadata_create(const Request& req, Response& res) {
    std::lock_guard lock(mutex_);
    json body;
    target_record* t = target_request(req, res, body);
    if (t == nullptr) return;
    if (!body.is_array()) {
        return not_readable(res);
    }
    std::map<std::string, std::string> entries;
    for (const json& m : body) {
        if (!m.is_object() || !m.contains("key") || !m["key"].is_string() || m["key"].get<std::string>().empty()) {
            return exception_info(res, 400, "jakarta.validation.ConstraintViolationException", "hawkbit.server.error.repo.constraintViolation",
                                  "key: must not be null");
        }
        const std::string key = m["key"].get<std::string>();
        if (t->metadata.count(key) != 0) {
            ++conflicts_;
            return exception_info(res, 409, "org.eclipse.hawkbit.repository.exception.EntityAlreadyExistsException",
                                  "hawkbit.server.error.repo.entityAlreadyExists", "Metadata entry with key '" + key + "' already exists");
        }
        entries[key] = m.contains("value") && m["value"].is_string() ? m["value"].get<std::string>() : "";
    }
    if (t->metadata.size() + entries.size() > static_cast<std::size_t>(options_.max_metadata_per_target)) {
        ++quota_refusals_;
        return exception_info(res, 403, "org.eclipse.hawkbit.repository.exception.AssignmentQuotaExceededException",
                              "hawkbit.server.error.quota.tooManyEntries",
                              "Quota exceeded: Cannot assign " + std::to_string(t->metadata.size() + entries.size()) +
                                  " more TargetMetadata entities to Target '" + req.matches[1].str() + "'. The maximum is " +
                                  std::to_string(options_.max_metadata_per_target) + ".");
    }
    t->metadata.insert(entries.begin(), entries.end());
    ++metadata_writes_;
    res.status = 201;  // createMetadata is void with @ResponseStatus(CREATED): no body
}

void fake_hawkbit::add_action_routes() {
    server_.Get(R"(/rest/v1/targets/([^/]+)/actions)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        target_record* t = find_or_404(req.matches[1].str(), res);
        if (t == nullptr) return;
        // ?q=status==pending|finished (ActionFields.STATUS: active or not); other queries are not modelled.
        const std::string q = req.get_param_value("q");
        const std::string only = q.rfind("status==", 0) == 0 ? q.substr(8) : "";
        json content = json::array();
        for (const auto& [id, status] : t->actions) {
            const bool active = !(status == "finished" || status == "canceled");
            if (!only.empty() && (only == "pending") != active) continue;
            content.push_back({{"id", id}, {"type", status == "canceling" || status == "canceled" ? "cancel" : "update"},
                               {"status", status == "finished" || status == "canceled" ? "finished" : "pending"},
                               {"detailStatus", status}});
        }
        res.set_content(json{{"content", content}, {"total", content.size()}, {"size", content.size()}}.dump(), "application/json");
    });
    server_.Delete(R"(/rest/v1/targets/([^/]+)/actions/(\d+))", [this](const Request& req, Response& res) { handle_cancel(req, res); });
}

// MgmtTargetResource.cancelAction + JpaDeploymentManagement.cancelAction / forceQuitAction:
// unknown action 404; another target's action 404 (empty body); a canceling or canceled action,
// or one that is no longer active, 405 notCancelable; otherwise 204 and the action is canceling.
// force=true quits a canceling action (else 405 notForceQuitable).
void fake_hawkbit::handle_cancel(const Request& req, Response& res) {
    std::lock_guard lock(mutex_);
    if (!authorized(req, res)) return;
    const std::int64_t action = std::stoll(req.matches[2].str());
    target_record* owner = nullptr;
    for (auto& [id, t] : targets_) {
        if (t.actions.count(action) != 0) owner = &t;
    }
    if (owner == nullptr) return not_found(res, "Action", std::to_string(action));
    if (owner->body["controllerId"] != req.matches[1].str()) {
        res.status = 404;
        return;
    }
    std::string& status = owner->actions[action];
    const std::string not_allowed = "org.eclipse.hawkbit.repository.exception.CancelActionNotAllowedException";
    if (req.get_param_value("force") == "true") {
        if (status != "canceling") {
            return exception_info(res, 405, "org.eclipse.hawkbit.repository.exception.ForceQuitActionNotAllowedException",
                                  "hawkbit.server.error.action.notForceQuitable", "Action [id: " + std::to_string(action) + "] is not canceled yet and cannot be force quit");
        }
        status = "canceled";
    } else {
        if (status == "canceling" || status == "canceled") {
            return exception_info(res, 405, not_allowed, "hawkbit.server.error.action.notCancelable", "Actions in canceling or canceled state cannot be canceled");
        }
        if (status != "pending") {
            return exception_info(res, 405, not_allowed, "hawkbit.server.error.action.notCancelable", "Action [id: " + std::to_string(action) + "] is not active and cannot be canceled");
        }
        status = "canceling";
    }
    ++cancels_;
    res.status = 204;
}

void fake_hawkbit::add_type_and_tag_routes() {
    // POST /rest/v1/targettypes and /rest/v1/targettags: a JSON array in, 201 with the created
    // entities out; a name that exists already is a 409 (unique constraint).
    auto create = [this](std::map<std::int64_t, json>& into, const std::string& kind) {
        return [this, &into, kind](const Request& req, Response& res) {
            std::lock_guard lock(mutex_);
            if (!authorized(req, res)) return;
            json body;
            if (!json_body(req, res, body)) return;
            if (!body.is_array()) {
                return not_readable(res);
            }
            json created = json::array();
            for (const json& e : body) {
                const std::string name = e.is_object() ? e.value("name", "") : "";
                bool exists = std::any_of(into.begin(), into.end(), [&](const auto& kv) { return kv.second["name"] == name; });
                if (name.empty() || exists) {
                    return exception_info(res, name.empty() ? 400 : 409,
                                          name.empty() ? "jakarta.validation.ConstraintViolationException"
                                                       : "org.eclipse.hawkbit.repository.exception.EntityAlreadyExistsException",
                                          name.empty() ? "hawkbit.server.error.repo.constraintViolation" : "hawkbit.server.error.repo.entityAlreadyExists",
                                          name.empty() ? "name: must not be null" : "The given entity already exists in database");
                }
                json entity{{"id", next_id_}, {"name", name}, {"description", e.value("description", "")}, {"colour", e.value("colour", "")}};
                if (kind == "TargetType") entity["key"] = e.value("key", name);
                into[next_id_++] = entity;
                created.push_back(entity);
            }
            res.status = 201;
            res.set_content(created.dump(), "application/json");
        };
    };
    // GET with ?q=name==X (FIQL, only this form here) or everything.
    auto list = [this](std::map<std::int64_t, json>& from) {
        return [this, &from](const Request& req, Response& res) {
            std::lock_guard lock(mutex_);
            if (!authorized(req, res)) return;
            const std::string q = req.get_param_value("q");
            std::string wanted = q.rfind("name==", 0) == 0 ? q.substr(6) : "";
            if (wanted.size() >= 2 && wanted.front() == '"' && wanted.back() == '"') {  // RSQL quoted argument
                std::string unquoted;
                for (std::size_t i = 1; i + 1 < wanted.size(); ++i) {
                    if (wanted[i] == '\\' && i + 2 < wanted.size()) ++i;
                    unquoted += wanted[i];
                }
                wanted = unquoted;
            }
            json content = json::array();
            for (const auto& [id, e] : from) {
                if (q.empty() || e["name"] == wanted) content.push_back(e);
            }
            res.set_content(json{{"content", content}, {"total", content.size()}, {"size", content.size()}}.dump(), "application/json");
        };
    };
    server_.Post("/rest/v1/targettypes", create(target_types_, "TargetType"));
    server_.Get("/rest/v1/targettypes", list(target_types_));
    server_.Post("/rest/v1/targettags", create(tags_, "TargetTag"));
    server_.Get("/rest/v1/targettags", list(tags_));
    // MgmtTargetTagResource.assignTarget / unassignTarget (POST / DELETE …/assigned/{controllerId}):
    // 200; an unknown tag or target is 404; assigning twice, or removing an absent tag, is no error.
    auto one_target = [this](bool assign) {
        return [this, assign](const Request& req, Response& res) {
            std::lock_guard lock(mutex_);
            if (!authorized(req, res)) return;
            const std::int64_t tag = std::stoll(req.matches[1].str());
            if (tags_.count(tag) == 0) return not_found(res, "TargetTag", std::to_string(tag));
            target_record* t = find_or_404(req.matches[2].str(), res);
            if (t == nullptr) return;
            if (assign) {
                t->tags.insert(tag);
                ++tag_assignments_;
            } else {
                t->tags.erase(tag);
            }
            res.status = 200;
        };
    };
    server_.Post(R"(/rest/v1/targettags/(\d+)/assigned/([^/]+))", one_target(true));
    server_.Delete(R"(/rest/v1/targettags/(\d+)/assigned/([^/]+))", one_target(false));
    // MgmtTargetTagResource.assignTargets: [{"controllerId"}] in, the targets out; already
    // assigned targets are ignored.
    server_.Post(R"(/rest/v1/targettags/(\d+)/assigned)", [this](const Request& req, Response& res) {
        std::lock_guard lock(mutex_);
        if (!authorized(req, res)) return;
        json body;
        if (!json_body(req, res, body)) return;
        if (!body.is_array()) return not_readable(res);
        const std::int64_t tag = std::stoll(req.matches[1].str());
        if (tags_.count(tag) == 0) return not_found(res, "TargetTag", std::to_string(tag));
        std::vector<target_record*> found;
        for (const json& e : body) {
            const std::string id = e.is_object() ? e.value("controllerId", "") : "";
            target_record* t = find_or_404(id, res);
            if (t == nullptr) return;
            found.push_back(t);
        }
        json out = json::array();
        for (target_record* t : found) {
            t->tags.insert(tag);
            ++tag_assignments_;
            out.push_back(target_json(*t, req));
        }
        res.set_content(out.dump(), "application/json");
    });
}

void fake_hawkbit::add_control_routes() {
    server_.Post(R"(/_fake/targets/([^/]+)/actions)", [this](const Request& req, Response& res) {
        json body = parse_or_null(req.body);
        std::lock_guard lock(mutex_);
        auto it = targets_.find(req.matches[1].str());
        if (it == targets_.end()) {
            res.status = 404;
            return;
        }
        const std::int64_t id = next_id_++;
        it->second.actions[id] = body.is_object() ? body.value("status", "pending") : "pending";
        res.set_content(json{{"id", id}}.dump(), "application/json");
    });
    server_.Post("/_fake/dos", [this](const Request& req, Response& res) {
        json body = parse_or_null(req.body);
        std::lock_guard lock(mutex_);
        options_.dos_filter = true;
        if (body.is_object()) {
            options_.dos_max_write = body.value("max_write", options_.dos_max_write);
            options_.dos_max_read = body.value("max_read", options_.dos_max_read);
        }
        dos_reads_.clear();
        dos_writes_.clear();
        res.set_content("{}", "application/json");
    });
    server_.Delete("/_fake/dos", [this](const Request&, Response& res) {
        std::lock_guard lock(mutex_);
        options_.dos_filter = false;
        res.set_content("{}", "application/json");
    });
    server_.Get(R"(/_fake/targets/([^/]+))", [this](const Request& req, Response& res) {
        json t = target(req.matches[1].str());
        if (t.is_null()) res.status = 404;
        res.set_content(t.dump(), "application/json");
    });
}

bool fake_hawkbit::json_body(const Request& req, Response& res, json& body) const {
    std::string type = req.get_header_value("Content-Type");
    if (type.rfind("application/json", 0) != 0 && type.rfind("application/hal+json", 0) != 0) {
        res.status = 415;
        res.set_content(json{{"timestamp", now_ms()}, {"status", 415}, {"error", "Unsupported Media Type"}, {"path", req.path}}.dump(),
                        "application/json");
        return false;
    }
    body = parse_or_null(req.body);
    return true;
}

fake_hawkbit::target_record* fake_hawkbit::target_request(const Request& req, Response& res, json& body) {
    if (!authorized(req, res) || !json_body(req, res, body)) return nullptr;
    return find_or_404(req.matches[1].str(), res);
}

fake_hawkbit::target_record* fake_hawkbit::find_or_404(const std::string& id, Response& res) {
    auto it = targets_.find(id);
    if (it != targets_.end()) return &it->second;
    not_found(res, "Target", id);
    return nullptr;
}

void fake_hawkbit::not_readable(Response& res) const {
    exception_info(res, 400, "org.springframework.http.converter.HttpMessageNotReadableException",
                   "hawkbit.server.error.rest.body.notReadable", "The given request body is not well formed");
}

void fake_hawkbit::not_found(Response& res, const std::string& type, const std::string& id) const {
    res.status = 404;
    json info{{"exceptionClass", "org.eclipse.hawkbit.repository.exception.EntityNotFoundException"},
              {"errorCode", options_.legacy_error_codes ? "hawkbit.server.error.repo.entitiyNotFound" : "hawkbit.server.error.repo.entityNotFound"},
              {"message", type + " with given identifier {" + id + "} does not exist."},
              {"info", {{"type", type}, {"entityId", id}}}};
    res.set_content(info.dump(), "application/json");
}

bool fake_hawkbit::authorized(const Request& req, Response& res) {
    const std::string expected = "Basic " + devicegate::base64_encode(options_.username + ":" + options_.password);
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
    if (status == 429) {  // only DosFilter answers 429: status only, no body
        res.status = 429;
        return;
    }
    if (status == 403) {
        return exception_info(res, 403, "org.eclipse.hawkbit.repository.exception.AssignmentQuotaExceededException",
                              "hawkbit.server.error.quota.tooManyEntries", message);
    }
    // Spring's default error body for everything hawkBit does not map itself.
    res.status = status;
    res.set_content(json{{"timestamp", now_ms()}, {"status", status}, {"error", message}, {"path", req.path}}.dump(),
                    "application/json");
}

json fake_hawkbit::target_json(const target_record& t, const Request& req) const {
    json out = t.body;
    out["_links"] = {{"self", {{"href", "http://" + req.get_header_value("Host") + "/rest/v1/targets/" +
                                            t.body["controllerId"].get<std::string>()}}}};
    return out;
}

json fake_hawkbit::target(const std::string& controller_id) const {
    std::lock_guard lock(mutex_);
    auto it = targets_.find(controller_id);
    if (it == targets_.end()) return nullptr;
    json out = it->second.body;
    out["metadata"] = it->second.metadata;
    json tags = json::array(), actions = json::object();
    for (auto id : it->second.tags) tags.push_back(tags_.at(id)["name"]);
    for (const auto& [id, status] : it->second.actions) actions[std::to_string(id)] = status;
    out["tags"] = tags;
    out["actions"] = actions;
    return out;
}

json fake_hawkbit::state() const {
    std::lock_guard lock(mutex_);
    return {{"targets", targets_.size()},     {"creates", creates_},          {"conflicts", conflicts_},
            {"deletes", deletes_},            {"metadata_writes", metadata_writes_}, {"quota_refusals", quota_refusals_},
            {"dos_refusals", dos_refusals_},  {"cancels", cancels_},          {"tag_assignments", tag_assignments_},
            {"target_types", target_types_.size()}, {"tags", tags_.size()},
            {"auth_failures", auth_failures_}, {"requests", requests_},       {"faults_injected", faults_injected_}};
}

void fake_hawkbit::reset_state() {
    targets_.clear();
    target_types_.clear();
    tags_.clear();
    dos_reads_.clear();
    dos_writes_.clear();
    next_id_ = 1;
    for (const auto& name : options_.target_types) {
        target_types_[next_id_] = {{"id", next_id_}, {"name", name}, {"key", name}, {"description", ""}, {"colour", ""}};
        ++next_id_;
    }
    creates_ = conflicts_ = auth_failures_ = deletes_ = metadata_writes_ = quota_refusals_ = dos_refusals_ = cancels_ = 0;
    tag_assignments_ = requests_ = faults_injected_ = 0;
}


// ---------------------------------------------------------------------------------------------
// Paging, as `devicegate-ctl reconcile` reads the backends (docs/integrations.md §G).
namespace {

/// A query parameter that must be a Java int; nullopt if it is not one (Spring's conversion
/// refuses it with a 400 before the controller runs).
std::optional<long long> int_param(const Request& req, const char* name, long long fallback) {
    if (!req.has_param(name)) return fallback;
    const std::string v = req.get_param_value(name);
    if (v.empty() || v.size() > 11 || v.find_first_not_of("-0123456789") != std::string::npos || v.find('-', 1) != std::string::npos) {
        return std::nullopt;
    }
    const long long n = std::stoll(v);
    if (n < INT32_MIN || n > INT32_MAX) return std::nullopt;
    return n;
}

/// Validator.PROPERTY_PATTERN: ^[\p{L}0-9_-]+$ (ASCII letters here).
bool tb_property(const std::string& p) {
    return !p.empty() && std::all_of(p.begin(), p.end(), [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-'; });
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
}

}  // namespace

// DeviceController.getTenantDevices -> BaseController.createPageLink (sortProperty checked against
// Validator.PROPERTY_PATTERN: "Invalid sort property"; sortOrder ASC|DESC, else "Unsupported sort
// order"), DeviceServiceImpl -> Validator.validatePageLink (pageSize >= 1, page >= 0), the DAO's
// query (type equal; textSearch ilike on name or label) sorted by the property, then id ASC
// (PageLink.toSort's default tiebreak), paged by Spring Data (DaoUtil.toPageData). Every refusal
// is 400 with errorCode 31 (BaseController.handleException: IllegalArgumentException and
// IncorrectParameterException -> BAD_REQUEST_PARAMS).
void fake_thingsboard::handle_device_page(const Request& req, Response& res) {
    if (!req.has_param("pageSize") || !req.has_param("page")) {
        return tb_error(res, 400, 31, "Required request parameter 'pageSize' for method parameter type int is not present");
    }
    auto size = int_param(req, "pageSize", 0), page = int_param(req, "page", 0);
    if (!size || !page) return tb_error(res, 400, 31, "Failed to convert value of type 'java.lang.String' to required type 'int'");
    const std::string property = req.get_param_value("sortProperty"), order = upper(req.get_param_value("sortOrder"));
    if (!property.empty() && !tb_property(property)) return tb_error(res, 400, 31, "Invalid sort property");
    if (!property.empty() && !order.empty() && order != "ASC" && order != "DESC") {
        return tb_error(res, 400, 31, "Unsupported sort order '" + req.get_param_value("sortOrder") + "'! Only 'ASC' or 'DESC' types are allowed.");
    }
    if (*size < 1) return tb_error(res, 400, 31, "Incorrect page link page size '" + std::to_string(*size) + "'. Page size must be greater than zero.");
    if (*page < 0) return tb_error(res, 400, 31, "Incorrect page link page '" + std::to_string(*page) + "'. Page must be positive integer.");
    // The columns this fake keeps; ThingsBoard's other sortable ones are not modelled.
    if (!property.empty() && property != "createdTime" && property != "name" && property != "label" && property != "type" && property != "id") {
        return tb_error(res, 400, 31, "Invalid sort property (not modelled by the fake)");
    }
    std::vector<const device_record*> rows;
    const std::string type = req.get_param_value("type"), search = req.get_param_value("textSearch");
    for (const auto& [name, d] : devices_) {
        if (!type.empty() && d.type != type) continue;
        if (!search.empty() && !contains_ci(d.name, search) && !contains_ci(d.label, search)) continue;
        rows.push_back(&d);
    }
    auto key = [&](const device_record* d) -> std::string {
        if (property == "name") return d->name;
        if (property == "label") return d->label;
        if (property == "type") return d->type;
        if (property == "createdTime") return (std::ostringstream() << std::setw(20) << std::setfill('0') << d->created).str();
        return d->id;
    };
    // Each key once per request (not per comparison): the lists get long in benchmarks.
    std::vector<std::pair<std::string, const device_record*>> keyed;
    for (const device_record* d : rows) keyed.emplace_back(key(d), d);
    const bool descending = !property.empty() && order == "DESC";
    std::sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
        if (a.first != b.first) return descending ? a.first > b.first : a.first < b.first;
        return a.second->id < b.second->id;
    });
    for (std::size_t i = 0; i < keyed.size(); ++i) rows[i] = keyed[i].second;
    const std::size_t n = static_cast<std::size_t>(*size), first = static_cast<std::size_t>(*page) * n;
    json data = json::array();
    for (std::size_t i = first; i < rows.size() && i < first + n; ++i) data.push_back(device_json(*rows[i]));
    const std::size_t pages = (rows.size() + n - 1) / n;
    res.set_content(json{{"data", data}, {"totalPages", pages}, {"totalElements", rows.size()}, {"hasNext", first + n < rows.size()}}.dump(),
                    "application/json");
}

// MgmtTargetResource.getTargets -> PagingUtility: an offset below 0 becomes 0, a limit below 1
// becomes 50 and one above 500 becomes 500 (MgmtRestConstants.REQUEST_PARAMETER_PAGING_MAX_LIMIT),
// silently; `sort` is "FIELD:DIRECTION[,...]" with TargetFields names, case-insensitive
// (SortUtility.parse: 400 sortParamSyntax / invalidField / invalidDirection); without it the
// order is controllerId ASC. The answer is a PagedList: content, total (of every target), size.
void fake_hawkbit::handle_target_page(const Request& req, Response& res) {
    auto offset = int_param(req, "offset", 0), limit = int_param(req, "limit", 50);
    if (!offset || !limit) {
        return exception_info(res, 400, "org.springframework.web.method.annotation.MethodArgumentTypeMismatchException",
                              "hawkbit.server.error.rest.param.invalid", "offset and limit must be numbers");
    }
    const std::size_t first = static_cast<std::size_t>(std::max(0LL, *offset));
    const std::size_t n = static_cast<std::size_t>(*limit < 1 ? 50 : std::min(500LL, *limit));
    std::vector<std::pair<std::string, bool>> orders;  // body field, descending
    std::stringstream tuples(req.has_param("sort") ? req.get_param_value("sort") : "CONTROLLERID:ASC");
    const std::string prefix = "hawkbit.server.error.rest.param.";
    const std::string exception = "org.eclipse.hawkbit.mgmt.rest.resource.exception.";
    for (std::string tuple; std::getline(tuples, tuple, ',');) {
        const auto colon = tuple.find(':');
        if (colon == std::string::npos || tuple.find(':', colon + 1) != std::string::npos) {
            return exception_info(res, 400, exception + "SortParameterSyntaxErrorException", prefix + "sortParamSyntax",
                                  "The given sort parameter is not well formed");
        }
        static const std::map<std::string, std::string> fields{{"ID", "controllerId"}, {"CONTROLLERID", "controllerId"},
                                                               {"NAME", "name"}, {"CREATEDAT", "createdAt"},
                                                               {"LASTMODIFIEDAT", "lastModifiedAt"}};
        auto field = fields.find(upper(tuple.substr(0, colon)));
        const std::string direction = upper(tuple.substr(colon + 1));
        if (field == fields.end()) {
            return exception_info(res, 400, exception + "SortParameterUnsupportedFieldException", prefix + "invalidField",
                                  "The given sort parameter field does not exist");
        }
        if (direction != "ASC" && direction != "DESC") {
            return exception_info(res, 400, exception + "SortParameterUnsupportedDirectionException", prefix + "invalidDirection",
                                  "The given sort parameter direction does not exist");
        }
        orders.emplace_back(field->second, direction == "DESC");
    }
    // Each row's sort values once per request (not per comparison).
    std::vector<std::pair<std::vector<json>, const target_record*>> rows;
    for (const auto& [id, t] : targets_) {
        std::vector<json> values;
        for (const auto& [field, descending] : orders) values.push_back(t.body.value(field, json()));
        rows.emplace_back(std::move(values), &t);
    }
    std::stable_sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) {
        for (std::size_t k = 0; k < orders.size(); ++k) {
            if (a.first[k] != b.first[k]) return orders[k].second ? b.first[k] < a.first[k] : a.first[k] < b.first[k];
        }
        return false;
    });
    json content = json::array();
    for (std::size_t i = first; i < rows.size() && content.size() < n; ++i) content.push_back(target_json(*rows[i].second, req));
    res.set_content(json{{"content", content}, {"total", targets_.size()}, {"size", content.size()}}.dump(), "application/json");
}

}  // namespace devicegate::fakes
