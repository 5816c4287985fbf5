#include "hawkbit_client.hpp"

#include "devicegate/pki.hpp"

#include <nlohmann/json.hpp>

namespace devicegate::worker {

hawkbit_client::hawkbit_client(const hawkbit_settings& settings, std::chrono::milliseconds timeout,
                               worker_metrics& metrics, login_gate& gate)
    : settings_(settings), timeout_(timeout), metrics_(metrics), gate_(gate),
      authorization_("Authorization: Basic " + base64_encode(settings.username + ":" + settings.password)) {}

std::string hawkbit_client::ensure_target(const std::string& device_id) {
    const std::string body = nlohmann::json::array({{{"controllerId", device_id}, {"name", device_id}}}).dump();
    gate_.before_login();
    auto r = http_.post(settings_.url + "/rest/v1/targets", body, "application/json", options());
    check_login(r, "POST /rest/v1/targets");
    if (r && r.status == 201) {
        ++metrics_.created[static_cast<std::size_t>(target::hawkbit)];
        return "created";
    }
    if (r && r.status == 409) return "exists";  // EntityAlreadyExistsException: already registered
    fail(target::hawkbit, r, "POST /rest/v1/targets", metrics_);
}

std::string hawkbit_client::delete_target(const std::string& device_id) {
    gate_.before_login();
    auto r = http_.del(settings_.url + "/rest/v1/targets/" + device_id, options());  // safe alphabet
    check_login(r, "DELETE /rest/v1/targets/{id}");
    if (r && (r.status == 200 || r.status == 204)) return "deleted";
    if (r && r.status == 404) return "absent";  // EntityNotFoundException: already gone
    fail(target::hawkbit, r, "DELETE /rest/v1/targets/{id}", metrics_);
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

}  // namespace devicegate::worker
