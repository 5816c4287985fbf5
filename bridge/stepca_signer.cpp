#include "stepca_signer.hpp"

#include "devicegate/pki.hpp"
#include "embedded_ca.hpp"
#include "jwt.hpp"

#include <httplib.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

#include <ctime>

namespace devicegate::bridge {

namespace {

constexpr int token_lifetime_seconds = 300;  // step's tokens live 5 minutes

/// step-ca's error body {"status","message"}; the message, or the raw status.
std::string stepca_message(int status, const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    std::string message = j.is_object() && j.contains("message") && j["message"].is_string() ? j["message"].get<std::string>() : "";
    return "step-ca answered HTTP " + std::to_string(status) + (message.empty() ? "" : ": " + message.substr(0, 300));
}

}  // namespace

std::string serial_hex_to_decimal(const std::string& hex) {
    BIGNUM* raw = nullptr;
    if (BN_hex2bn(&raw, hex.c_str()) == 0) throw signer_error("not a hex serial");
    std::unique_ptr<BIGNUM, c_deleter<BN_free>> bn(raw);
    char* dec = BN_bn2dec(bn.get());
    std::string out = dec != nullptr ? dec : "";
    OPENSSL_free(dec);
    return out;
}

stepca_signer::stepca_signer(options opts) : opts_(std::move(opts)) {
    key_ = read_private_key(opts_.key_file);
    if (EVP_PKEY_get_base_id(key_.get()) != EVP_PKEY_EC || EVP_PKEY_get_bits(key_.get()) != 256) {
        throw signer_error(opts_.key_file + ": the provisioner key must be EC P-256 (ES256)");
    }
    if (opts_.kid.empty()) opts_.kid = jwk_thumbprint(key_.get());
    try {
        sub_ca_ = std::move(parse_certificates(read_file(opts_.sub_ca_file, max_certificate_file_bytes), opts_.sub_ca_file).at(0));
        read_file(opts_.root_file, max_certificate_file_bytes);  // fail at start, not at the first enrollment
    } catch (const std::exception& e) {
        throw signer_error(e.what());
    }
    const std::string rest = opts_.url.substr(std::string_view("https://").size());
    const auto colon = rest.rfind(':');
    host_ = rest.substr(0, colon);
    if (colon != std::string::npos) port_ = std::stoi(rest.substr(colon + 1));
}

std::string stepca_signer::token(const std::string& audience_path, const std::string& subject) const {
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    nlohmann::json claims{{"iss", opts_.provisioner},
                          {"sub", subject},
                          {"aud", opts_.url + audience_path},  // one audience: a string, as step writes it
                          {"sans", nlohmann::json::array({subject})},
                          {"nbf", now},
                          {"iat", now},
                          {"exp", now + token_lifetime_seconds},
                          {"jti", random_jti()}};
    return sign_es256_jwt(key_.get(), opts_.kid, claims);
}

stepca_signer::reply stepca_signer::post(const std::string& path, const std::string& body) const {
    httplib::SSLClient client(host_, port_);
    client.set_ca_cert_path(opts_.root_file.c_str());
    client.enable_server_certificate_verification(true);
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(opts_.timeout).count();
    client.set_connection_timeout(seconds);
    client.set_read_timeout(seconds);
    client.set_write_timeout(seconds);
    auto res = client.Post(path.c_str(), body, "application/json");
    if (!res) throw signer_error("step-ca " + opts_.url + path + " unreachable: " + httplib::to_string(res.error()));
    return {res->status, res->body};
}

issued_certificate stepca_signer::issue(X509_REQ* csr, const std::string& device_id) {
    bio_ptr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509_REQ(bio.get(), csr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    // No notAfter: the provisioner's claims (default 24h) decide, as for `step ca certificate`.
    const nlohmann::json request{{"csr", std::string(data, static_cast<std::size_t>(n))},
                                 {"ott", token("/1.0/sign", device_id)}};
    const reply r = post("/1.0/sign", request.dump());
    if (r.status != 201) throw signer_error(stepca_message(r.status, r.body));
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("crt") || !j["crt"].is_string()) throw signer_error("step-ca's answer has no crt");
    auto certs = parse_certificates(j["crt"].get<std::string>(), "step-ca crt");
    X509* leaf = certs.at(0).get();
    // Never hand out what the tenant's brokers would refuse.
    if (X509_check_issued(sub_ca_.get(), leaf) != X509_V_OK || X509_verify(leaf, X509_get0_pubkey(sub_ca_.get())) != 1) {
        take_openssl_errors();
        throw signer_error("step-ca returned a certificate not issued by the configured Sub-CA");
    }
    issued_certificate out;
    out.certificate_pem = to_pem(leaf);
    out.serial_hex = serial_hex(X509_get0_serialNumber(leaf));
    out.not_after = to_time_t(X509_get0_notAfter(leaf));
    return out;
}

void stepca_signer::revoke(const std::string& serial_hex_value, int reason_code) {
    const std::string serial = serial_hex_to_decimal(serial_hex_value);
    const nlohmann::json request{{"serial", serial},
                                 {"reasonCode", reason_code},
                                 {"reason", "revoked by devicegate-bridge"},
                                 {"passive", true},  // step-ca implements only passive revocation (501 otherwise)
                                 {"ott", token("/1.0/revoke", serial)}};
    const reply r = post("/1.0/revoke", request.dump());
    if (r.status == 200) return;
    if (r.status == 400 && r.body.find("already revoked") != std::string::npos) {
        throw signer_not_found("serial " + serial_hex_value + " is already revoked at step-ca", true);
    }
    throw signer_error(stepca_message(r.status, r.body));
}

}  // namespace devicegate::bridge
