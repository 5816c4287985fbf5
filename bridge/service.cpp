#include "service.hpp"

#include "devicegate/device_id.hpp"
#include "devicegate/pki.hpp"
#include "embedded_ca.hpp"
#include "enroll_tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include <ctime>

namespace devicegate::bridge {

namespace {

constexpr const char* broker_id = "devicegate-bridge";

/// The pool has no address left: nothing is signed.
struct pool_exhausted : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The WireGuard public key is another device's peer already: nothing is signed.
struct wireguard_key_in_use : std::runtime_error {
    using std::runtime_error::runtime_error;
    std::string owner;
};

/// Failures that sign nothing and that the client can retry (502, 503) or correct (409).
bool token_worth_keeping(int status) { return status == 409 || status == 502 || status == 503; }

std::string chain_pem(const tenant_trust& trust) {
    std::string out;
    for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) out += to_pem(trust.certificate(role));
    return out;
}

}  // namespace

api_response json_response(int status, const nlohmann::ordered_json& body) {
    api_response r;
    r.status = status;
    r.body = body.dump(2) + "\n";
    return r;
}

api_response error_response(int status, std::string_view code, const std::string& message) {
    return json_response(status, nlohmann::ordered_json{{"error", code}, {"message", message}});
}

std::string bearer_token(const std::string& authorization) {
    constexpr std::string_view scheme = "Bearer ";
    if (authorization.size() <= scheme.size()) return "";
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != std::tolower(static_cast<unsigned char>(scheme[i]))) {
            return "";
        }
    }
    return authorization.substr(scheme.size());
}

bridge_service::bridge_service(bridge_config config, std::shared_ptr<const tenant_trust> trust, std::shared_ptr<signer> ca,
                               logger log)
    : config_(std::move(config)), model_{config_.redis_prefix}, trust_(std::move(trust)), ca_(std::move(ca)),
      log_(std::move(log)), redis_(config_.redis, config_.threads), limiter_(config_.rate_limit),
      pool_(parse_pool(config_.wireguard.pool)), wg_keys_(model_), ca_chain_pem_(chain_pem(*trust_)) {}

void bridge_service::audit(const char* op, const api_request& r, const std::string& device_id, std::string_view outcome,
                           const std::string& detail) const {
    // One line per decision; the token and the operator key are never part of it.
    std::string line = std::string("devicegate-bridge: audit op=") + op + " device=" + log_safe(device_id) +
                       " source=" + log_safe(r.source, 64) + " outcome=" + std::string(outcome);
    if (!detail.empty()) line += " detail=\"" + log_safe(detail, 200) + "\"";
    if (outcome == "ok") log_.notice(line);
    else log_.warning(line);
}

api_response bridge_service::refuse(const char* op, const api_request& r, const std::string& device_id, int status,
                                    std::string_view code, const std::string& message) const {
    audit(op, r, device_id, code, message);
    return error_response(status, code, message);
}

bool bridge_service::operator_key_ok(const std::string& key) const {
    if (config_.operator_api_key.empty() || key.empty()) return false;
    // Compare digests in constant time: neither the length nor a prefix leaks.
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), a);
    SHA256(reinterpret_cast<const unsigned char*>(config_.operator_api_key.data()), config_.operator_api_key.size(), b);
    return CRYPTO_memcmp(a, b, sizeof a) == 0;
}

std::optional<api_response> bridge_service::authenticate_enrollment(const api_request& r, const std::string& device_id,
                                                                    const char* op, std::optional<held_token>& held) {
    if (!r.api_key.empty()) {
        if (operator_key_ok(r.api_key)) return std::nullopt;
        return refuse(op, r, device_id, 401, "bad_api_key", "the operator API key is not valid");
    }
    const std::string token = bearer_token(r.authorization);
    token_use use;
    try {
        use = redis_.with([&](redis_connection& c) { return consume_enroll_token(c, model_, token, device_id); });
    } catch (const std::exception& e) {
        log_.error(std::string("devicegate-bridge: Redis: ") + log_safe(e.what(), 200));
        return refuse(op, r, device_id, 503, "redis_unavailable", "the token store is unreachable; retry later");
    }
    const token_check check = use.check;
    if (check == token_check::ok) held = held_token{token, use, std::chrono::steady_clock::now()};
    switch (check) {
        case token_check::ok: return std::nullopt;
        case token_check::missing:
            return refuse(op, r, device_id, 401, to_string(check), "an enrollment token is required (Authorization: Bearer ...)");
        case token_check::unknown:
            return refuse(op, r, device_id, 401, to_string(check), "the enrollment token is unknown, already used or expired");
        case token_check::wrong_device:
            return refuse(op, r, device_id, 403, to_string(check),
                          "the enrollment token was issued for another device; it is now used up");
    }
    return refuse(op, r, device_id, 500, "internal_error", "unexpected token state");
}

api_response bridge_service::enroll(const api_request& r) {
    const char* op = "enroll";
    if (!is_safe_device_id(r.device_id)) {
        return refuse(op, r, r.device_id, 400, "bad_device_id",
                      "the device id must match [A-Za-z0-9][A-Za-z0-9._:@-]{0,127}");
    }
    enroll_request req;
    try {
        req = parse_enroll_request(r.body);
    } catch (const std::invalid_argument& e) {
        return refuse(op, r, r.device_id, 400, "bad_request", e.what());
    }
    if (req.wireguard_public_key.empty() && !config_.wireguard.generate_keys) {
        return refuse(op, r, r.device_id, 400, "bad_request", "wireguard_public_key is required");
    }
    auto checked = check_csr(req.csr_pem, r.device_id);
    if (checked.problem != csr_problem::ok) return refuse(op, r, r.device_id, 400, to_string(checked.problem), checked.detail);
    std::optional<held_token> held;
    if (auto refused = authenticate_enrollment(r, r.device_id, op, held)) return *refused;
    return give_back(held, issue_json(r, req, r.device_id, std::move(checked), op, true), op, r, r.device_id);
}

api_response bridge_service::give_back(const std::optional<held_token>& held, api_response answer, const char* op,
                                       const api_request& r, const std::string& device_id) {
    if (!held || !token_worth_keeping(answer.status)) return answer;
    std::string note, outcome = "token_lost";
    try {
        const auto elapsed =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - held->at);
        const bool kept = redis_.with([&](redis_connection& c) {
            return restore_enroll_token(c, model_, held->token, device_id, held->use, elapsed);
        });
        if (kept) outcome = "token_kept";
        note = kept ? "; the enrollment token remains valid for a retry" : "; the enrollment token has expired meanwhile";
    } catch (const std::exception& e) {
        log_.error(std::string("devicegate-bridge: Redis: the enrollment token could not be put back: ") + log_safe(e.what(), 200));
        note = "; the enrollment token could not be kept: ask the operator for a new one";
    }
    audit(op, r, device_id, outcome, note.substr(2));
    auto body = nlohmann::json::parse(answer.body, nullptr, false);
    if (!body.is_object() || !body.contains("error") || !body.contains("message")) return answer;
    return error_response(answer.status, body["error"].get<std::string>(), body["message"].get<std::string>() + note);
}

std::string bridge_service::wireguard_for(const std::string& device_id, const std::string& device_public_key) {
    auto slot = redis_.with([&](redis_connection& c) { return allocate_slot(c, wg_keys_, device_id, pool_.capacity()); });
    if (!slot) throw pool_exhausted("the WireGuard address pool " + config_.wireguard.pool + " is exhausted");
    const std::string address = pool_.address(*slot);
    wireguard_keypair pair{"", device_public_key};
    if (pair.public_key.empty()) pair = generate_wireguard_keypair();
    auto owner = redis_.with([&](redis_connection& c) { return record_peer(c, wg_keys_, device_id, pair.public_key, address); });
    if (owner) {
        wireguard_key_in_use e("the wireguard_public_key is registered to another device (WireGuard allows one peer per "
                               "key): generate the device's own key pair");
        e.owner = *owner;
        throw e;
    }
    return device_config(config_.wireguard, address, pair.private_key);
}

std::variant<api_response, bridge_service::issued> bridge_service::issue_checked(const api_request& r, const std::string& device_id,
                                                                              x509_req_ptr csr, const std::string& key_type,
                                                                              const char* op,
                                                                              const std::string* wireguard_public_key) {
    try {
        // Before anything is allocated, whichever the signer: a certificate clamped to a Sub-CA
        // that expires (or has expired) is useless. The embedded CA checks again when it signs.
        check_ca_validity(trust_->certificate(ca_role::sub_ca), config_.sub_ca_file, std::time(nullptr),
                          required_ca_validity_left(config_.cert_validity));
        issued out;
        if (wireguard_public_key != nullptr) out.wireguard_config = wireguard_for(device_id, *wireguard_public_key);
        out.cert = ca_->issue(csr.get(), device_id);
        long long job = 0;
        try {
            redis_.with([&](redis_connection& c) {
                remember_serial(c, model_, device_id, out.cert.serial_hex);
                if (config_.enqueue_registration) {
                    job = enqueue_registration(c, model_, describe_certificate(device_id, out.cert.certificate_pem, broker_id));
                }
                return 0;
            });
        } catch (const redis_io_error& e) {
            // Signed, but not recorded: not a failure that signed nothing, so the token is not
            // put back (a retry would sign a second certificate), and the serial is logged for
            // the operator to revoke at the CA (revoke finds only recorded serials).
            log_.error("devicegate-bridge: Redis: " + log_safe(e.what(), 200) + "; the certificate serial=" +
                       out.cert.serial_hex + " for " + device_id + " was signed but not recorded nor delivered");
            return refuse(op, r, device_id, 500, "signed_not_recorded",
                          "the certificate was signed but could not be recorded (Redis unreachable); ask the "
                          "operator for a new enrollment token");
        }
        audit(op, r, device_id, "ok",
              "serial=" + out.cert.serial_hex + " key=" + key_type +
                  " job=" + (job == 1 ? "registration" : job == 2 ? "certificate_changed" : "none"));
        return out;
    } catch (const pool_exhausted& e) {
        return refuse(op, r, device_id, 503, "wireguard_pool_exhausted", e.what());
    } catch (const wireguard_key_in_use& e) {
        // The other device's id goes to the audit line only, not to the caller.
        audit(op, r, device_id, "wireguard_key_in_use", std::string(e.what()) + " (device " + e.owner + ")");
        return error_response(409, "wireguard_key_in_use", e.what());
    } catch (const ca_validity_error& e) {
        log_.error(std::string("devicegate-bridge: CA: ") + log_safe(e.what(), 300));
        return refuse(op, r, device_id, 503, "ca_expired",
                      "the CA certificate cannot sign now (expired, not yet valid or about to expire); the operator "
                      "must replace it; retry later");
    } catch (const signer_error& e) {
        log_.error(std::string("devicegate-bridge: CA: ") + log_safe(e.what(), 300));
        return refuse(op, r, device_id, 502, "ca_failed", "the CA did not issue the certificate; retry later");
    } catch (const redis_io_error& e) {
        log_.error(std::string("devicegate-bridge: Redis: ") + log_safe(e.what(), 200));
        return refuse(op, r, device_id, 503, "redis_unavailable", "Redis is unreachable; retry later");
    } catch (const std::exception& e) {
        log_.error(std::string("devicegate-bridge: ") + op + ": " + log_safe(e.what(), 300));
        return refuse(op, r, device_id, 500, "internal_error", "the enrollment failed; see the bridge log");
    }
}

api_response bridge_service::issue_json(const api_request& r, const enroll_request& req, const std::string& device_id,
                                        csr_result checked, const char* op, bool with_wireguard) {
    auto result = issue_checked(r, device_id, std::move(checked.csr), checked.key_type, op,
                                with_wireguard ? &req.wireguard_public_key : nullptr);
    if (auto* refused = std::get_if<api_response>(&result)) return std::move(*refused);
    auto& done = std::get<issued>(result);
    nlohmann::ordered_json body{{"device_id", device_id},
                        {"certificate_pem", done.cert.certificate_pem},
                        {"ca_chain_pem", ca_chain_pem_}};
    if (with_wireguard) body["wireguard_config"] = done.wireguard_config;
    return json_response(200, body);
}

}  // namespace devicegate::bridge
