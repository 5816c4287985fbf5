#include "inventory.hpp"

#include "devicegate/pki.hpp"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <set>
#include <thread>

namespace devicegate::worker {

using json = nlohmann::json;

namespace {

/// Repeats a GET for retryable failures (docs/integrations.md §D: transport, 408, 429, 5xx);
/// anything else, or the last try, is returned to the caller's classification.
template <class Get>
http_response with_retries(Get&& get, const inventory_options& o) {
    auto wait = o.backoff;
    for (int attempt = 1;; ++attempt) {
        http_response r = get();
        const bool retryable = !r || r.status == 408 || r.status == 429 || r.status >= 500;
        if (!retryable || attempt >= o.attempts) return r;
        std::this_thread::sleep_for(wait);
        wait *= 2;
    }
}

[[noreturn]] void bad_answer(target t, const std::string& call, const std::string& what) {
    throw target_failure(t, false, 200, "", std::string(to_string(t)) + ": " + call + ": " + what);
}

json parse_object(target t, const http_response& r, const std::string& call) {
    try {
        json j = json::parse(r.body);
        if (j.is_object()) return j;
    } catch (const json::exception&) {
    }
    bad_answer(t, call, "200 without a JSON object");
}

std::string string_field(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

/// One entry of PageData.data: a Device with its name and id.id.
inventory_entry thingsboard_entry(const json& d, const std::string& call) {
    inventory_entry e;
    if (d.is_object()) {
        e.name = string_field(d, "name");
        if (auto id = d.find("id"); id != d.end() && id->is_object()) e.thingsboard_id = string_field(*id, "id");
    }
    if (e.name.empty() || e.thingsboard_id.empty()) bad_answer(target::thingsboard, call, "a device without name or id.id");
    return e;
}

}  // namespace

std::vector<inventory_entry> list_thingsboard_devices(thingsboard_client& client, const inventory_options& o) {
    const std::string size = std::to_string(std::max<std::size_t>(1, o.page_size));
    std::vector<inventory_entry> out;
    std::set<std::string> seen;
    for (std::size_t page = 0; page < o.max_pages; ++page) {
        // BaseController.createPageLink: sortProperty must be a plain property name; the DAO
        // appends "id ASC" (PageLink.toSort with addDefaultSorting), so the order is total.
        const std::string path = "/api/tenant/devices?pageSize=" + size + "&page=" + std::to_string(page) +
                                 "&sortProperty=createdTime&sortOrder=ASC";
        const std::string call = "GET /api/tenant/devices (page " + std::to_string(page) + ")";
        auto r = with_retries([&] { return client.get(path); }, o);
        if (!(r && r.status == 200)) fail(target::thingsboard, r, call, client.metrics());
        json j = parse_object(target::thingsboard, r, call);
        auto data = j.find("data");
        auto has_next = j.find("hasNext");
        if (data == j.end() || !data->is_array() || has_next == j.end() || !has_next->is_boolean()) {
            bad_answer(target::thingsboard, call, "200 without data and hasNext (not a PageData)");
        }
        for (const json& d : *data) {
            inventory_entry e = thingsboard_entry(d, call);
            if (seen.insert(e.name).second) out.push_back(std::move(e));
        }
        // An empty page that claims more would loop for ever: stop.
        if (!has_next->get<bool>() || data->empty()) return out;
    }
    throw target_failure(target::thingsboard, false, 200, "",
                         "thingsboard: GET /api/tenant/devices: still hasNext after " + std::to_string(o.max_pages) +
                             " pages");
}

std::vector<inventory_entry> list_hawkbit_targets(hawkbit_client& client, const inventory_options& o) {
    const std::string limit = std::to_string(std::clamp<std::size_t>(o.page_size, 1, 500));
    std::vector<inventory_entry> out;
    std::set<std::string> seen;
    std::size_t offset = 0;
    for (std::size_t page = 0; page < o.max_pages; ++page) {
        // SortUtility.parse: "FIELD:DIRECTION" tuples, field names of TargetFields (CREATEDAT,
        // CONTROLLERID), case-insensitive. Without `sort` the order is controllerId ASC.
        const std::string path = "/rest/v1/targets?offset=" + std::to_string(offset) + "&limit=" + limit +
                                 "&sort=createdAt:ASC,controllerId:ASC";
        const std::string call = "GET /rest/v1/targets (offset " + std::to_string(offset) + ")";
        auto r = with_retries([&] { return client.get(path, "GET /rest/v1/targets"); }, o);
        if (!(r && r.status == 200)) fail(target::hawkbit, r, call, client.metrics());
        json j = parse_object(target::hawkbit, r, call);
        auto content = j.find("content");
        auto total = j.find("total");
        if (content == j.end() || !content->is_array() || total == j.end() || !total->is_number_unsigned()) {
            bad_answer(target::hawkbit, call, "200 without content and total (not a PagedList)");
        }
        for (const json& t : *content) {
            const std::string id = t.is_object() ? string_field(t, "controllerId") : "";
            if (id.empty()) bad_answer(target::hawkbit, call, "a target without controllerId");
            if (seen.insert(id).second) out.push_back({id, ""});
        }
        offset += content->size();
        if (content->empty() || offset >= total->get<std::size_t>()) return out;
    }
    throw target_failure(target::hawkbit, false, 200, "",
                         "hawkbit: GET /rest/v1/targets: still more after " + std::to_string(o.max_pages) + " pages");
}

bool thingsboard_device_exists(thingsboard_client& client, const std::string& id, const inventory_options& o) {
    auto r = with_retries([&] { return client.get("/api/tenant/devices?deviceName=" + id); }, o);
    if (r && r.status == 200) return true;
    if (r && r.status == 404) return false;
    fail(target::thingsboard, r, "GET /api/tenant/devices?deviceName=", client.metrics());
}

bool hawkbit_target_exists(hawkbit_client& client, const std::string& id, const inventory_options& o) {
    auto r = with_retries([&] { return client.get("/rest/v1/targets/" + id, "GET /rest/v1/targets/{id}"); }, o);
    if (r && r.status == 200) return true;
    if (r && r.status == 404) return false;
    fail(target::hawkbit, r, "GET /rest/v1/targets/{id}", client.metrics());
}

std::optional<thingsboard_credentials> read_thingsboard_credentials(thingsboard_client& client,
                                                                    const std::string& device_uuid,
                                                                    const inventory_options& o) {
    const std::string call = "GET /api/device/{id}/credentials";
    auto r = with_retries([&] { return client.get("/api/device/" + device_uuid + "/credentials"); }, o);
    if (r && r.status == 404) return std::nullopt;  // BaseController.checkEntityId: deleted meanwhile
    if (!(r && r.status == 200)) fail(target::thingsboard, r, call, client.metrics());
    json j = parse_object(target::thingsboard, r, call);
    thingsboard_credentials out;
    out.type = string_field(j, "credentialsType");
    if (out.type.empty()) bad_answer(target::thingsboard, call, "200 without credentialsType");
    if (out.type == "X509_CERTIFICATE") out.fingerprint_sha256 = thingsboard_value_fingerprint(string_field(j, "credentialsValue"));
    return out;
}

std::string thingsboard_value_fingerprint(const std::string& bare_base64) {
    const std::size_t n = bare_base64.size();
    const bool alphabet = std::all_of(bare_base64.begin(), bare_base64.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '+' || c == '/' || c == '=';
    });
    if (n == 0 || n % 4 != 0 || !alphabet || n > (64u << 10)) return "";
    std::string der(n / 4 * 3, '\0');
    const int decoded = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                                        reinterpret_cast<const unsigned char*>(bare_base64.data()), static_cast<int>(n));
    if (decoded < 0) return "";
    // EVP_DecodeBlock counts the bytes the padding stands for; drop them.
    const std::size_t padding = bare_base64.ends_with("==") ? 2 : bare_base64.ends_with("=") ? 1 : 0;
    der.resize(static_cast<std::size_t>(decoded) - padding);
    sha256_digest digest{};
    unsigned int length = 0;
    if (EVP_Digest(der.data(), der.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) return "";
    return fingerprint_hex(digest);
}

}  // namespace devicegate::worker
