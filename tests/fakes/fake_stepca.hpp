#pragma once
// A fake step-ca written from smallstep/certificates (api/sign.go, api/revoke.go,
// authority/provisioner/jwk.go authorizeToken, authority/authorize.go, errs/error.go): HTTPS,
// POST /1.0/sign and /1.0/revoke with a JWK provisioner's one-time tokens (ES256, iss =
// provisioner name, aud = https://<dns>[:port]/1.0/<endpoint>, sub non-empty, exp/nbf/iat with
// one minute of leeway, jti never reused), CN in [sub]+sans, revocation passive only and by
// decimal serial (sub = serial), errors {"status","message"}. Runs in-process on a free port.
#include "devicegate/ossl.hpp"

#include <httplib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

namespace devicegate::test {

class fake_stepca {
public:
    struct options {
        std::string tls_cert, tls_key;       // the CA's HTTPS identity (a chain file and key)
        std::string sub_ca_cert, sub_ca_key; // the intermediate that signs (the tenant Sub-CA)
        std::string provisioner = "devicegate";
        std::string provisioner_public_key;  // PEM
        std::string kid;                     // expected header kid
        std::string dns_name = "localhost";
    };
    explicit fake_stepca(options o);
    ~fake_stepca();
    fake_stepca(const fake_stepca&) = delete;
    fake_stepca& operator=(const fake_stepca&) = delete;

    /// Starts listening on 127.0.0.1; false if it could not.
    bool start();
    std::string url() const { return "https://" + opts_.dns_name + ":" + std::to_string(port_); }
    int port() const { return port_; }

    /// The next sign answers this HTTP status with step-ca's error body (0 = none).
    void fail_next_sign(int status) { fail_next_sign_ = status; }
    std::size_t signed_count() const;
    bool is_revoked(const std::string& decimal_serial) const;
    std::size_t revoked_count() const;

private:
    struct verdict {
        int status = 0;  // 0 = the token is good
        std::string message;
        std::string subject;
        std::vector<std::string> sans;
    };
    verdict check_token(const std::string& token, const std::string& endpoint);
    void sign(const httplib::Request& req, httplib::Response& res);
    void revoke(const httplib::Request& req, httplib::Response& res);

    options opts_;
    evp_pkey_ptr provisioner_key_, ca_key_;
    x509_ptr ca_cert_;
    std::unique_ptr<httplib::SSLServer> server_;
    std::thread thread_;
    int port_ = 0;
    std::atomic<int> fail_next_sign_{0};
    mutable std::mutex mutex_;
    std::set<std::string> used_jti_, issued_, revoked_;
};

}  // namespace devicegate::test
