// Renewal over mTLS, revocation by the operator, and the CRL.
#include "devicegate/device_id.hpp"
#include "devicegate/revocation_store.hpp"
#include "devicegate/pki.hpp"
#include "service.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <utility>

namespace devicegate::bridge {

namespace {
/// How long a revoke waits for a replica (WAIT 1), as devicegate-ctl revoke does.
constexpr std::chrono::milliseconds revoke_replication_timeout{1000};
}  // namespace

std::optional<api_response> bridge_service::authenticate_renewal(const api_request& r, const std::string& device_id,
                                                                 const char* op) {
    if (r.peer_certificate == nullptr) {
        return refuse(op, r, device_id, 401, "client_certificate_missing",
                      "renewal needs the current device certificate as the TLS client certificate");
    }
    // The same checks as the broker's: pinned to the Sub-CA, full chain, end entity, EKU, id.
    const verify_outcome v = trust_->verify(r.peer_certificate);
    if (v.why != reason::ok || !v.cert) {
        return refuse(op, r, device_id, 403, "certificate_untrusted", "the client certificate is not from this tenant's Sub-CA: " + v.detail);
    }
    std::string detail;
    if (trust_->check_times(*v.cert, std::time(nullptr), std::chrono::seconds(0), detail) != reason::ok) {
        return refuse(op, r, device_id, 403, "certificate_expired", "the client certificate is not valid now: " + detail);
    }
    if (v.cert->device_id != device_id) {
        return refuse(op, r, device_id, 403, "certificate_for_another_device", "the client certificate's CN is not the device id of the URL");
    }
    try {
        const bool denied = ca_->is_revoked(v.serial_hex) ||
                            redis_.with([&](redis_connection& c) { return revocation_store(c, model_).denies(device_id, v.serial_hex); });
        if (denied) return refuse(op, r, device_id, 403, "certificate_revoked", "the client certificate is revoked");
    } catch (const std::exception& e) {
        log_.error(std::string("devicegate-bridge: Redis: ") + log_safe(e.what(), 200));
        return refuse(op, r, device_id, 503, "redis_unavailable", "the deny-list is unreachable; retry later");
    }
    return std::nullopt;
}

api_response bridge_service::renew(const api_request& r) {
    const char* op = "renew";
    if (!is_safe_device_id(r.device_id)) {
        return refuse(op, r, r.device_id, 400, "bad_device_id", "the device id must match [A-Za-z0-9][A-Za-z0-9._:@-]{0,127}");
    }
    if (auto refused = authenticate_renewal(r, r.device_id, op)) return *refused;
    enroll_request req;
    try {
        req = parse_enroll_request(r.body);
    } catch (const std::invalid_argument& e) {
        return refuse(op, r, r.device_id, 400, "bad_request", e.what());
    }
    auto checked = check_csr(req.csr_pem, r.device_id);
    if (checked.problem != csr_problem::ok) return refuse(op, r, r.device_id, 400, to_string(checked.problem), checked.detail);
    return issue_json(r, req, r.device_id, std::move(checked), op, false);
}

api_response bridge_service::revoke(const api_request& r) {
    const char* op = "revoke";
    if (!is_safe_device_id(r.device_id)) {
        return refuse(op, r, r.device_id, 400, "bad_device_id", "the device id must match [A-Za-z0-9][A-Za-z0-9._:@-]{0,127}");
    }
    if (config_.operator_api_key.empty()) return refuse(op, r, r.device_id, 403, "operator_api_disabled", "no operator_api_key is configured");
    if (!operator_key_ok(r.api_key)) return refuse(op, r, r.device_id, 401, "bad_api_key", "an operator API key (X-Api-Key) is required");
    std::string why = "revoked by operator";
    int code = 0;  // unspecified (RFC 5280 5.3.1)
    bool decommission = false;  // also remove it from ThingsBoard and hawkBit (the worker's job)
    if (!r.body.empty()) {
        auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_object()) return refuse(op, r, r.device_id, 400, "bad_request", "the body must be a JSON object");
        if (j.contains("reason") && j["reason"].is_string()) why = j["reason"].get<std::string>().substr(0, 200);
        if (j.contains("reason_code")) {
            if (!j["reason_code"].is_number_integer() || j["reason_code"].get<int>() < 0 || j["reason_code"].get<int>() > 10 ||
                j["reason_code"].get<int>() == 7) {
                return refuse(op, r, r.device_id, 400, "bad_request", "reason_code must be an RFC 5280 CRLReason 0..10 (not 7)");
            }
            code = j["reason_code"].get<int>();
        }
        if (j.contains("decommission")) {
            if (!j["decommission"].is_boolean()) return refuse(op, r, r.device_id, 400, "bad_request", "decommission must be true or false");
            decommission = j["decommission"].get<bool>();
        }
    }
    try {
        // The deny-list first: connected sessions are kicked even if the CA is slow or down.
        // WAIT on the connection that wrote (it counts that connection's writes): a failover
        // before a replica has the entry would lose it, as devicegate-ctl revoke says too.
        const auto [brokers, replication] = redis_.with([&](redis_connection& c) {
            revocation_store store(c, model_);
            const long long n = store.revoke({false, r.device_id},
                                             {why, static_cast<std::int64_t>(std::time(nullptr)), "devicegate-bridge"});
            return std::make_pair(n, store.wait_replicated(revoke_replication_timeout));
        });
        if (!replication.safe()) {
            log_.warning("devicegate-bridge: the revocation of device=" + r.device_id + " was not confirmed by any replica within " +
                         std::to_string(replication.timeout.count()) + " ms (" + std::to_string(replication.replicas) +
                         " connected); a failover now could lose it: revoke again after the failover");
        }
        auto serials = redis_.with([&](redis_connection& c) { return serials_of(c, model_, r.device_id); });
        nlohmann::json revoked = nlohmann::json::array();
        for (const auto& s : serials) {
            if (ca_->is_revoked(s)) continue;
            try {
                ca_->revoke(s, code);
                revoked.push_back(s);
            } catch (const signer_not_found&) {
                // already revoked at the CA (step-ca says so): nothing left to do for it
            }
        }
        // After the deny-list: the worker acts on a decommission only for a revoked device.
        std::string job_id;
        if (decommission) {
            job_id = redis_.with([&](redis_connection& c) {
                return revocation_store(c, model_).enqueue_decommission(r.device_id, why, static_cast<std::int64_t>(std::time(nullptr)));
            });
        }
        audit(op, r, r.device_id, "ok", "serials=" + std::to_string(revoked.size()) + " brokers=" + std::to_string(brokers) +
                                            " replicated=" + (replication.safe() ? "yes" : "no") +
                                            (decommission ? " decommission=" + job_id : ""));
        nlohmann::ordered_json answer{{"device_id", r.device_id}, {"revoked_serials", revoked}, {"brokers_notified", brokers},
                                      {"decommission_enqueued", decommission}};
        // Only when a replica was expected (replicas listed, or a Sentinel URL): a single Redis
        // answers as before.
        if (replication.expected) {
            answer["replicated"] = {{"confirmed", replication.safe()}, {"replicas", replication.replicas},
                                    {"acknowledged", replication.acknowledged}};
        }
        if (decommission) answer["decommission_job"] = job_id;
        return json_response(200, answer);
    } catch (const signer_error& e) {
        log_.error(std::string("devicegate-bridge: CA: ") + log_safe(e.what(), 300));
        return refuse(op, r, r.device_id, 502, "ca_failed", "the device is on the deny-list, but the CA did not revoke its certificates; retry");
    } catch (const std::exception& e) {
        log_.error(std::string("devicegate-bridge: Redis: ") + log_safe(e.what(), 200));
        return refuse(op, r, r.device_id, 503, "redis_unavailable", "Redis is unreachable; retry");
    }
}

api_response bridge_service::crl() const {
    std::string der = ca_->crl_der();
    if (der.empty()) return error_response(404, "no_crl", "this bridge's signer publishes no CRL (step-ca serves /1.0/crl)");
    api_response r;
    r.status = 200;
    r.content_type = "application/pkix-crl";
    r.body = std::move(der);
    return r;
}

}  // namespace devicegate::bridge
