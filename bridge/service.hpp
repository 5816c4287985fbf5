#pragma once
// The HTTP API of devicegate-bridge, independent of the HTTP server so that the unit tests,
// the benchmark and the fuzz target drive it directly:
//   POST /devices/{id}/enroll    token (Authorization: Bearer) or operator key (X-Api-Key)
//   POST /devices/{id}/renew     the device's current certificate over mTLS
//   POST /devices/{id}/revoke    operator key
//   GET  /crl                    the embedded CA's CRL (DER)
//   /.well-known/est/cacerts, simpleenroll, simplereenroll (RFC 7030; est.cpp)
#include "bridge_config.hpp"
#include "bridge_store.hpp"
#include "devicegate/log.hpp"
#include "devicegate/tenant_trust.hpp"
#include "enroll_request.hpp"
#include "enroll_tokens.hpp"
#include "rate_limiter.hpp"
#include "renewal_crls.hpp"
#include "signer.hpp"
#include "wireguard.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace devicegate::bridge {

struct api_request {
    std::string device_id;       // from the path ("" for EST)
    std::string body;
    std::string authorization;   // the Authorization header
    std::string api_key;         // the X-Api-Key header
    std::string source;          // the peer address
    X509* peer_certificate = nullptr;  // mTLS client certificate, not owned; null if none
};

struct api_response {
    int status = 500;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
};


api_response json_response(int status, const nlohmann::ordered_json& body);
/// A JSON error body {"error": code, "message": text}.
api_response error_response(int status, std::string_view code, const std::string& message);

class bridge_service {
public:
    bridge_service(bridge_config config, std::shared_ptr<const tenant_trust> trust, std::shared_ptr<signer> ca, logger log);

    api_response enroll(const api_request& r);
    api_response renew(const api_request& r);
    api_response revoke(const api_request& r);
    api_response crl() const;
    api_response est_cacerts() const;
    api_response est_simpleenroll(const api_request& r);
    api_response est_simplereenroll(const api_request& r);

    /// False (and the request is refused with 429) when `source` exceeded the rate limit.
    bool admit(const std::string& source) { return limiter_.allow(source); }
    const std::string& ca_chain_pem() const noexcept { return ca_chain_pem_; }
    const bridge_config& config() const noexcept { return config_; }

private:
    struct issued {
        issued_certificate cert;
        std::string wireguard_config;
    };
    /// An enrollment token this request used, kept so that a retryable failure can put it back.
    struct held_token {
        std::string token;  // a secret: never logged
        token_use use;
        std::chrono::steady_clock::time_point at;
    };
    /// Signs a checked CSR for an authenticated caller; with a WireGuard config when
    /// `wireguard_public_key` is given ("" = generate a pair). Refusals are audited.
    std::variant<api_response, issued> issue_checked(const api_request& r, const std::string& device_id, x509_req_ptr csr,
                                                     const std::string& key_type, const char* op,
                                                     const std::string* wireguard_public_key);
    api_response issue_json(const api_request& r, const enroll_request& req, const std::string& device_id,
                            csr_result checked, const char* op, bool with_wireguard);
    api_response est_issue(const api_request& r, const char* op, bool reenroll);
    /// Authenticates by operator key or token; a token used up is left in `held`.
    std::optional<api_response> authenticate_enrollment(const api_request& r, const std::string& device_id, const char* op,
                                                        std::optional<held_token>& held);
    /// `answer` to an authenticated enrollment; when it is a failure the client can retry
    /// (502, 503) or correct (409), the token in `held` is put back first, and the message says
    /// whether it is still valid.
    api_response give_back(const std::optional<held_token>& held, api_response answer, const char* op, const api_request& r,
                           const std::string& device_id);
    std::optional<api_response> authenticate_renewal(const api_request& r, const std::string& device_id, const char* op);
    bool operator_key_ok(const std::string& key) const;
    std::string wireguard_for(const std::string& device_id, const std::string& device_public_key);
    void audit(const char* op, const api_request& r, const std::string& device_id, std::string_view outcome,
               const std::string& detail) const;
    api_response refuse(const char* op, const api_request& r, const std::string& device_id, int status,
                        std::string_view code, const std::string& message) const;

    bridge_config config_;
    redis_model model_;
    std::shared_ptr<const tenant_trust> trust_;
    std::shared_ptr<signer> ca_;
    logger log_;
    redis_pool redis_;
    rate_limiter limiter_;
    address_pool pool_;
    wireguard_keys wg_keys_;
    std::string ca_chain_pem_;
    // The CRLs renewal checks (null without crl_file/crl_url); last, as it starts a thread.
    // Initialized here rather than in the constructor's list so that service.cpp need not know.
    std::unique_ptr<renewal_crls> crls_ = make_renewal_crls(config_, trust_, log_);
};

/// The Bearer token of an Authorization header ("" when absent or another scheme).
std::string bearer_token(const std::string& authorization);

}  // namespace devicegate::bridge
