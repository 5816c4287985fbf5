#include "hawkbit_client.hpp"

#include "devicegate/log.hpp"
#include "devicegate/pki.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace devicegate::worker {

using json = nlohmann::json;

namespace {

/// A FIQL `name==...` query, percent-encoded; a name with other characters than these is
/// quoted (hawkBit's RSQL parser reads a quoted argument verbatim).
std::string name_query(const std::string& name) {
    const bool plain = !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.';
    });
    std::string quoted = name;
    if (!plain) {
        std::string escaped;
        for (char c : name) {
            if (c == '"' || c == '\\') escaped += '\\';
            escaped += c;
        }
        quoted = "\"" + escaped + "\"";
    }
    return "name%3D%3D" + url_encode(quoted);
}

/// The id of the entry named exactly `name` in a PagedList body ({"content":[...]}), or "".
std::string id_named(const json& list, const std::string& name) {
    if (!list.is_object() || !list.contains("content") || !list["content"].is_array()) return "";
    for (const json& e : list["content"]) {
        if (e.is_object() && e.value("name", "") == name && e.contains("id") && e["id"].is_number_integer()) {
            return std::to_string(e["id"].get<std::int64_t>());
        }
    }
    return "";
}

/// The target vanished between two calls (deleted by an operator): the next attempt creates it.
[[noreturn]] void target_gone(const std::string& call) {
    throw target_failure(target::hawkbit, true, 404, "", "hawkbit: " + call + ": the target was deleted meanwhile; will retry");
}

/// ExceptionInfo.info.type of a 404 ("Target", "TargetTag", ...), "" if none.
std::string not_found_type(const http_response& r) {
    const json j = json_or_null(r.body);
    if (!j.is_object() || !j.contains("info") || !j["info"].is_object()) return "";
    return j["info"].value("type", "");
}

}  // namespace

hawkbit_client::hawkbit_client(const hawkbit_settings& settings, std::chrono::milliseconds timeout,
                               worker_metrics& metrics, login_gate& gate, setup_lookup& setup)
    : settings_(settings), timeout_(timeout), metrics_(metrics), gate_(gate), setup_(setup),
      authorization_("Authorization: Basic " + base64_encode(settings.username + ":" + settings.password)) {}

http_response hawkbit_client::send(const char* method, const std::string& path, const std::string* body,
                                   const char* call) {
    gate_.before_login();
    const std::string url = settings_.url + path;
    const std::string_view m(method);
    auto r = m == "GET"      ? http_.get(url, options())
             : m == "DELETE" ? http_.del(url, options())
             : m == "PUT"    ? http_.put(url, *body, "application/json", options())
                             : http_.post(url, *body, "application/json", options());
    check_login(r, call);
    return r;
}

std::string hawkbit_client::ensure_target(const std::string& device_id) {
    json target{{"controllerId", device_id}, {"name", device_id}};
    if (!settings_.target_type.empty()) {
        // MgmtTargetRequestBody.targetType: the type's id. Resolved once for every thread.
        const std::string type = setup_.resolve(
            "target_type", [&] { return find_target_type(settings_.target_type); },
            "target type '" + log_safe(settings_.target_type) +
                "' not found in hawkBit: registrations paused; create it or fix hawkbit_target_type");
        target["targetType"] = std::stoll(type);
    }
    const std::string body = json::array({target}).dump();
    auto r = send("POST", "/rest/v1/targets", &body, "POST /rest/v1/targets");
    if (r && r.status == 201) {
        ++metrics_.created[static_cast<std::size_t>(target::hawkbit)];
        return "created";
    }
    if (r && r.status == 409) return "exists";  // EntityAlreadyExistsException: already registered
    fail(target::hawkbit, r, "POST /rest/v1/targets", metrics_);
}

std::string hawkbit_client::find_target_type(const std::string& name) {
    auto r = send("GET", "/rest/v1/targettypes?limit=100&q=" + name_query(name), nullptr, "GET /rest/v1/targettypes");
    if (!(r && r.status == 200)) fail(target::hawkbit, r, "GET /rest/v1/targettypes", metrics_);
    return id_named(json_or_null(r.body), name);
}

// MgmtTargetResource.createMetadata / updateMetadata (JpaTargetManagement): a key that exists
// already is EntityAlreadyExistsException (409) and nothing of the request is kept; PUT
// /metadata/{key} with {"value"} replaces one (404 if it does not exist). More entries than
// max-meta-data-entries-per-target is AssignmentQuotaExceededException: 403.
std::string hawkbit_client::write_metadata(const std::string& device_id,
                                           const std::vector<std::pair<std::string, std::string>>& entries) {
    const std::string base = "/rest/v1/targets/" + device_id + "/metadata";  // safe alphabet
    auto post = [&](std::size_t from, std::size_t to) {
        json list = json::array();
        for (std::size_t i = from; i < to; ++i) list.push_back({{"key", entries[i].first}, {"value", entries[i].second}});
        const std::string body = list.dump();
        return send("POST", base, &body, "POST /rest/v1/targets/{id}/metadata");
    };
    auto r = post(0, entries.size());
    if (r && (r.status == 201 || r.status == 200)) {
        metrics_.hawkbit_metadata_writes += entries.size();
        return "created";
    }
    if (r && r.status == 404) target_gone("POST /rest/v1/targets/{id}/metadata");
    if (!(r && r.status == 409)) fail(target::hawkbit, r, "POST /rest/v1/targets/{id}/metadata", metrics_);
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const std::string body = json{{"value", entries[i].second}}.dump();
        for (int round = 0;; ++round) {
            auto u = send("PUT", base + "/" + entries[i].first, &body, "PUT /rest/v1/targets/{id}/metadata/{key}");
            if (u && u.status == 200) break;
            if (u && u.status == 404 && not_found_type(u) == "Target") target_gone("PUT /rest/v1/targets/{id}/metadata/{key}");
            if (!(u && u.status == 404) || round == 1) fail(target::hawkbit, u, "PUT /rest/v1/targets/{id}/metadata/{key}", metrics_);
            auto c = post(i, i + 1);  // this key is not there (yet): create it alone
            if (c && (c.status == 201 || c.status == 200)) break;
            if (c && c.status == 404) target_gone("POST /rest/v1/targets/{id}/metadata");
            if (!(c && c.status == 409)) fail(target::hawkbit, c, "POST /rest/v1/targets/{id}/metadata", metrics_);
        }
        ++metrics_.hawkbit_metadata_writes;
    }
    return "updated";
}

std::string hawkbit_client::delete_target(const std::string& device_id) {
    auto r = send("DELETE", "/rest/v1/targets/" + device_id, nullptr, "DELETE /rest/v1/targets/{id}");  // safe alphabet
    if (r && (r.status == 200 || r.status == 204)) return "deleted";
    if (r && r.status == 404) return "absent";  // EntityNotFoundException: already gone
    fail(target::hawkbit, r, "DELETE /rest/v1/targets/{id}", metrics_);
}

std::string hawkbit_client::revoke_target(const std::string& device_id) {
    if (!end_open_actions(device_id)) return "absent";
    const std::string tag = tag_id();
    // MgmtTargetTagResource.assignTargets: already assigned targets are ignored (200).
    const std::string body = json::array({{{"controllerId", device_id}}}).dump();
    auto r = send("POST", "/rest/v1/targettags/" + tag + "/assigned", &body, "POST /rest/v1/targettags/{id}/assigned");
    if (r && r.status == 200) return "revoked";
    if (r && r.status == 404 && not_found_type(r) == "TargetTag") {
        setup_.forget("revoked_tag");  // deleted by an operator meanwhile: created again on the retry
        throw target_failure(target::hawkbit, true, 404, "", "hawkbit: the devicegate-revoked tag was deleted meanwhile; will retry");
    }
    if (r && r.status == 404) return "absent";
    fail(target::hawkbit, r, "POST /rest/v1/targettags/{id}/assigned", metrics_);
}

bool hawkbit_client::drop_revoked_tag(const std::string& device_id) {
    auto r = send("GET", "/rest/v1/targets/" + device_id + "/tags", nullptr, "GET /rest/v1/targets/{id}/tags");
    if (r && r.status == 404) return false;
    if (!(r && r.status == 200)) fail(target::hawkbit, r, "GET /rest/v1/targets/{id}/tags", metrics_);
    const json tags = json_or_null(r.body);  // MgmtTargetRestApi.getTags: a plain list of MgmtTag
    const std::string tag = id_named(json{{"content", tags.is_array() ? tags : json::array()}}, revoked_tag);
    if (tag.empty()) return false;
    // MgmtTargetTagResource.unassignTarget: 200.
    auto d = send("DELETE", "/rest/v1/targettags/" + tag + "/assigned/" + device_id, nullptr,
                  "DELETE /rest/v1/targettags/{id}/assigned/{controllerId}");
    if (d && (d.status == 200 || d.status == 204 || d.status == 404)) return d.status != 404;
    fail(target::hawkbit, d, "DELETE /rest/v1/targettags/{id}/assigned/{controllerId}", metrics_);
}

// MgmtTargetResource.cancelAction -> JpaDeploymentManagement: cancel (DELETE) turns an active
// action into CANCELING and waits for the device's confirmation; a canceling action is still
// active ("pending") and refuses a second cancel (405). force=true (forceQuitAction) closes a
// canceling action without the device, which a revoked device can no longer give.
bool hawkbit_client::end_open_actions(const std::string& device_id) {
    const std::string base = "/rest/v1/targets/" + device_id + "/actions";
    for (int round = 0; round < 10; ++round) {
        auto r = send("GET", base + "?limit=100&q=status%3D%3Dpending", nullptr, "GET /rest/v1/targets/{id}/actions");
        if (r && r.status == 404) return false;
        if (!(r && r.status == 200)) fail(target::hawkbit, r, "GET /rest/v1/targets/{id}/actions", metrics_);
        const json list = json_or_null(r.body);
        if (!list.is_object() || !list.contains("content") || !list["content"].is_array()) {
            throw target_failure(target::hawkbit, true, 200, "", "hawkbit: GET /rest/v1/targets/{id}/actions: 200 without content");
        }
        std::size_t open = 0;
        for (const json& a : list["content"]) {
            if (!a.is_object() || a.value("status", "") != "pending" || !a.contains("id") || !a["id"].is_number_integer()) continue;
            ++open;
            const std::string action = base + "/" + std::to_string(a["id"].get<std::int64_t>());
            if (a.value("type", "") != "cancel") {
                auto c = send("DELETE", action, nullptr, "DELETE /rest/v1/targets/{id}/actions/{actionId}");
                if (c && c.status == 204) ++metrics_.hawkbit_actions_canceled;
                else if (!(c && (c.status == 405 || c.status == 404))) fail(target::hawkbit, c, "DELETE /rest/v1/targets/{id}/actions/{actionId}", metrics_);
            }
            auto f = send("DELETE", action + "?force=true", nullptr, "DELETE /rest/v1/targets/{id}/actions/{actionId}?force=true");
            if (!(f && (f.status == 204 || f.status == 405 || f.status == 404))) {
                fail(target::hawkbit, f, "DELETE /rest/v1/targets/{id}/actions/{actionId}?force=true", metrics_);
            }
        }
        if (open == 0) return true;
    }
    throw target_failure(target::hawkbit, true, 200, "",
                         "hawkbit: target " + device_id + " still has open actions after ten rounds of cancels; will retry");
}

std::string hawkbit_client::tag_id() {
    return setup_.resolve("revoked_tag", [&] {
        for (int round = 0; round < 2; ++round) {
            auto r = send("GET", "/rest/v1/targettags?limit=100&q=" + name_query(revoked_tag), nullptr, "GET /rest/v1/targettags");
            if (!(r && r.status == 200)) fail(target::hawkbit, r, "GET /rest/v1/targettags", metrics_);
            if (std::string id = id_named(json_or_null(r.body), revoked_tag); !id.empty()) return id;
            const std::string body = json::array({{{"name", revoked_tag},
                                                   {"description", "Decommissioned by devicegate-worker (keep mode)"},
                                                   {"colour", "#b71c1c"}}}).dump();
            auto c = send("POST", "/rest/v1/targettags", &body, "POST /rest/v1/targettags");
            if (c && c.status == 201) {
                const json created = json_or_null(c.body);
                if (created.is_array() && !created.empty() && created[0].contains("id") && created[0]["id"].is_number_integer()) {
                    return std::to_string(created[0]["id"].get<std::int64_t>());
                }
            } else if (!(c && c.status == 409)) {  // 409: another worker created it: read it again
                fail(target::hawkbit, c, "POST /rest/v1/targettags", metrics_);
            }
        }
        throw target_failure(target::hawkbit, true, 0, "", "hawkbit: the devicegate-revoked tag could not be read or created; will retry");
    }, "");
}

http_get_options hawkbit_client::options() const {
    http_get_options o;
    o.timeout = timeout_;
    // Without Accept, Spring answers hal+json; the body is the same, but be explicit.
    o.headers = {authorization_, "Accept: application/json"};
    return o;
}

void hawkbit_client::check_login(const http_response& r, const char* call) {
    if (r && r.status != 401) gate_.accepted();
    if (r && r.status == 401) {
        metrics_.error(target::hawkbit, error_kind::auth);
        gate_.refused(std::string(call) + ": HTTP 401: credentials refused for user " + log_safe(settings_.username) +
                      "; check hawkbit_username / hawkbit_password");
    }
}

std::vector<std::pair<std::string, std::string>> hawkbit_metadata(const job& j) {
    auto certs = parse_certificates(j.cert.certificate_pem, "job certificate");
    if (certs.empty()) throw std::invalid_argument("the job's certificate_pem holds no certificate");
    return {{"devicegate.serial", j.cert.serial_hex},
            {"devicegate.notAfter", iso_utc(to_time_t(X509_get0_notAfter(certs.front().get())))},
            {"devicegate.fingerprintSha256", j.cert.fingerprint_sha256}};
}

}  // namespace devicegate::worker
