// Renewal over mTLS, revocation by the operator, and the CRL.
#include "devicegate/device_id.hpp"
#include "devicegate/revocation_store.hpp"
#include "devicegate/pki.hpp"
#include "revoke_request.hpp"
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
    // Every revocation source a broker may follow: the Sub-CA's CRLs (whoever issued the
    // certificate: another bridge, step-ca, an operator's CA tool), the embedded CA's own index
    // and the Redis deny-list by device id and by serial. A renewed certificate has a fresh
    // serial that none of them lists, so a revoked one must never get this far.
    if (crls_) {
        const crl_verdict crl = crls_->check(v.cert->serial, std::time(nullptr));
        if (crl.why == crl_refusal_kind::revoked || crl.why == crl_refusal_kind::ca_revoked) {
            return refuse(op, r, device_id, 403, to_string(crl.why), "the client certificate is revoked: " + crl.detail);
        }
        if (crl.why != crl_refusal_kind::none) {
            return refuse(op, r, device_id, 503, to_string(crl.why), "renewal needs a current CRL: " + crl.detail + "; retry later");
        }
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

namespace {

/// What the signer did with each serial recorded for a device.
struct ca_revocation {
    nlohmann::json revoked = nlohmann::json::array();          // revoked now
    nlohmann::json already_revoked = nlohmann::json::array();  // revoked before
    nlohmann::json not_revoked = nlohmann::json::array();      // unknown to this CA: {"serial","message"}
};

/// Revokes every serial at the CA. A serial another issuer signed (another bridge sharing the
/// Redis, a restored state) is unknown here: it is reported, never counted as revoked. Throws
/// signer_error when the CA fails.
ca_revocation revoke_at_ca(signer& ca, const std::vector<std::string>& serials, int reason_code) {
    ca_revocation out;
    for (const auto& s : serials) {
        if (ca.is_revoked(s)) {
            out.already_revoked.push_back(s);
            continue;
        }
        try {
            ca.revoke(s, reason_code);
            out.revoked.push_back(s);
        } catch (const signer_not_found& e) {
            if (e.already_revoked || ca.is_revoked(s)) out.already_revoked.push_back(s);
            else out.not_revoked.push_back({{"serial", s}, {"message", e.what()}});
        }
    }
    return out;
}

std::string audit_detail(const ca_revocation& ca, long long brokers, bool replicated, const std::string& job_id) {
    std::string out = "serials=" + std::to_string(ca.revoked.size()) + " brokers=" + std::to_string(brokers) +
                      " replicated=" + (replicated ? "yes" : "no");
    const char* separator = " not_revoked=";  // serials this CA does not know: their issuer must revoke them
    for (const auto& n : ca.not_revoked) {
        out += separator + n["serial"].get<std::string>();
        separator = ",";
    }
    return out + (job_id.empty() ? "" : " decommission=" + job_id);
}

}  // namespace

api_response bridge_service::revoke(const api_request& r) {
    const char* op = "revoke";
    if (!is_safe_device_id(r.device_id)) {
        return refuse(op, r, r.device_id, 400, "bad_device_id", "the device id must match [A-Za-z0-9][A-Za-z0-9._:@-]{0,127}");
    }
    if (config_.operator_api_key.empty()) return refuse(op, r, r.device_id, 403, "operator_api_disabled", "no operator_api_key is configured");
    if (!operator_key_ok(r.api_key)) return refuse(op, r, r.device_id, 401, "bad_api_key", "an operator API key (X-Api-Key) is required");
    revoke_request req;
    try {
        req = parse_revoke_request(r.body);
    } catch (const std::invalid_argument& e) {
        return refuse(op, r, r.device_id, 400, "bad_request", e.what());
    }
    try {
        // The deny-list first: connected sessions are kicked even if the CA is slow or down.
        // WAIT on the connection that wrote (it counts that connection's writes): a failover
        // before a replica has the entry would lose it, as devicegate-ctl revoke says too.
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        const auto [brokers, replication] = redis_.with([&](redis_connection& c) {
            revocation_store store(c, model_);
            const long long n = store.revoke({false, r.device_id}, {req.reason, now, "devicegate-bridge"});
            return std::make_pair(n, store.wait_replicated(revoke_replication_timeout));
        });
        if (!replication.safe()) {
            log_.warning("devicegate-bridge: the revocation of device=" + r.device_id + " was not confirmed by any replica within " +
                         std::to_string(replication.timeout.count()) + " ms (" + std::to_string(replication.replicas) +
                         " connected); a failover now could lose it: revoke again after the failover");
        }
        const auto serials = redis_.with([&](redis_connection& c) { return serials_of(c, model_, r.device_id); });
        ca_revocation ca = revoke_at_ca(*ca_, serials, req.reason_code);
        // After the deny-list: the worker acts on a decommission only for a revoked device.
        std::string job_id;
        if (req.decommission) {
            job_id = redis_.with([&](redis_connection& c) { return revocation_store(c, model_).enqueue_decommission(r.device_id, req.reason, now); });
        }
        audit(op, r, r.device_id, ca.not_revoked.empty() ? "ok" : "partial", audit_detail(ca, brokers, replication.safe(), job_id));
        nlohmann::ordered_json answer{{"device_id", r.device_id}, {"revoked_serials", ca.revoked}, {"brokers_notified", brokers},
                                      {"decommission_enqueued", req.decommission}};
        answer["already_revoked_serials"] = ca.already_revoked;
        // Serials this CA cannot revoke: the device is on the deny-list, but the CRL will not
        // list them; the issuer that signed them must revoke them (docs/enrollment.md).
        answer["not_revoked_serials"] = ca.not_revoked;
        // Only when a replica was expected (replicas listed, or a Sentinel URL): a single Redis
        // answers as before.
        if (replication.expected) {
            answer["replicated"] = {{"confirmed", replication.safe()}, {"replicas", replication.replicas},
                                    {"acknowledged", replication.acknowledged}};
        }
        if (req.decommission) answer["decommission_job"] = job_id;
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
