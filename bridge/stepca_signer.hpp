#pragma once
// step-ca as the signer (smallstep/certificates api/sign.go, api/revoke.go): POST
// {ca}/1.0/sign {"csr","ott"} -> 201 {"crt","ca","certChain"}; POST {ca}/1.0/revoke
// {"serial" (decimal),"reasonCode","reason","passive":true,"ott"} -> 200 {"status":"ok"}.
// Every call carries a fresh one-time token of the JWK provisioner (jwt.hpp): aud the
// endpoint's URL, sub the device id (sign) or the decimal serial (revoke), sans [id], 5
// minutes, a random jti. TLS is verified against the step-ca root. Errors are
// {"status","message"} (errs/error.go). step-ca publishes its own CRL at {ca}/1.0/crl.
#include "signer.hpp"

#include <string>

namespace devicegate::bridge {

struct stepca_settings;

class stepca_signer final : public signer {
public:
    struct options {
        std::string url;          // https://host:port, no trailing slash
        std::string root_file;    // step-ca's root: the TLS trust anchor
        std::string provisioner;  // the JWK provisioner's name (iss)
        std::string key_file;     // its P-256 private key (PEM)
        std::string kid;          // "" = the key's RFC 7638 thumbprint
        std::string sub_ca_file;  // the Sub-CA every returned certificate must be issued by
        std::chrono::milliseconds timeout{std::chrono::seconds(10)};
    };
    explicit stepca_signer(options opts);

    issued_certificate issue(X509_REQ* csr, const std::string& device_id) override;
    void revoke(const std::string& serial_hex, int reason_code) override;
    std::string crl_der() const override { return ""; }
    bool is_revoked(const std::string&) const override { return false; }

    /// The one-time token for `audience_path` ("/1.0/sign") and `subject`.
    std::string token(const std::string& audience_path, const std::string& subject) const;

private:
    struct reply {
        int status = 0;
        std::string body;
    };
    reply post(const std::string& path, const std::string& body) const;

    options opts_;
    evp_pkey_ptr key_;
    x509_ptr sub_ca_;
    std::string host_;
    int port_ = 443;
};

/// "0A1B" -> "2587" (decimal, as step-ca normalizes serials).
std::string serial_hex_to_decimal(const std::string& hex);

}  // namespace devicegate::bridge
