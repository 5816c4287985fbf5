#include "fake_stepca.hpp"

#include "devicegate/pki.hpp"
#include "embedded_ca.hpp"
#include "stepca_signer.hpp"

#include <openssl/ecdsa.h>
#include <openssl/pem.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <optional>

namespace devicegate::test {

namespace {

using json = nlohmann::json;
using ecdsa_sig_ptr = std::unique_ptr<ECDSA_SIG, c_deleter<ECDSA_SIG_free>>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, c_deleter<EVP_MD_CTX_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, c_deleter<BN_free>>;

// errs/error.go default messages.
constexpr const char* unauthorized_message =
    "The request lacked necessary authorization to be completed. Please see the certificate authority logs for more info.";

void error(httplib::Response& res, int status, const std::string& message) {
    res.status = status;
    res.set_content(json{{"status", status}, {"message", message}}.dump(), "application/json");
}

std::string bad_request(const std::string& x) { return "The request could not be completed: " + x + "."; }
std::string forbidden(const std::string& x) { return "The request was forbidden by the certificate authority: " + x + "."; }

std::optional<std::string> base64url_decode(std::string s) {
    for (char& c : s) {
        if (c == '-') c = '+';
        else if (c == '_') c = '/';
        else if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return std::nullopt;
    }
    const std::size_t pad = (4 - s.size() % 4) % 4;
    if (pad == 3) return std::nullopt;
    s.append(pad, '=');
    std::string out(s.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                                  static_cast<int>(s.size()));
    if (n < 0) return std::nullopt;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

/// ES256: raw R||S over "header.payload" with the provisioner's key.
bool verify_es256(EVP_PKEY* key, const std::string& input, const std::string& raw) {
    if (raw.size() != 64) return false;
    ecdsa_sig_ptr sig(ECDSA_SIG_new());
    BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
    BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
    ECDSA_SIG_set0(sig.get(), r, s);
    unsigned char* der = nullptr;
    const int len = i2d_ECDSA_SIG(sig.get(), &der);
    md_ctx_ptr ctx(EVP_MD_CTX_new());
    const bool ok = len > 0 && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
                    EVP_DigestVerify(ctx.get(), der, static_cast<std::size_t>(len),
                                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
    OPENSSL_free(der);
    return ok;
}

}  // namespace

fake_stepca::fake_stepca(options o) : opts_(std::move(o)) {
    bio_ptr bio(BIO_new_mem_buf(opts_.provisioner_public_key.data(), static_cast<int>(opts_.provisioner_public_key.size())));
    provisioner_key_.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!provisioner_key_) throw std::runtime_error("fake step-ca: bad provisioner public key");
    ca_key_ = bridge::read_private_key(opts_.sub_ca_key);
    ca_cert_ = std::move(parse_certificates(read_file(opts_.sub_ca_cert, max_certificate_file_bytes), "sub-ca").at(0));
}

fake_stepca::~fake_stepca() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
}

bool fake_stepca::start() {
    server_ = std::make_unique<httplib::SSLServer>(opts_.tls_cert.c_str(), opts_.tls_key.c_str());
    if (!server_->is_valid()) return false;
    // Routes are mounted at / and /1.0 (ca/ca.go).
    for (const char* prefix : {"", "/1.0"}) {
        server_->Post(std::string(prefix) + "/sign", [this](const httplib::Request& q, httplib::Response& s) { sign(q, s); });
        server_->Post(std::string(prefix) + "/revoke", [this](const httplib::Request& q, httplib::Response& s) { revoke(q, s); });
    }
    port_ = server_->bind_to_any_port("127.0.0.1");
    if (port_ <= 0) return false;
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // stop() before the listener runs would be lost (httplib checks is_running_), and the
    // destructor would wait on accept() for ever.
    for (int i = 0; i < 500 && !server_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return server_->is_running();
}

fake_stepca::verdict fake_stepca::check_token(const std::string& token, const std::string& endpoint) {
    verdict v{401, unauthorized_message, {}, {}};
    const auto d1 = token.find('.');
    const auto d2 = token.find('.', d1 == std::string::npos ? 0 : d1 + 1);
    if (d1 == std::string::npos || d2 == std::string::npos) return v;
    auto header = base64url_decode(token.substr(0, d1));
    auto payload = base64url_decode(token.substr(d1 + 1, d2 - d1 - 1));
    auto signature = base64url_decode(token.substr(d2 + 1));
    if (!header || !payload || !signature) return v;
    json h = json::parse(*header, nullptr, false);
    json c = json::parse(*payload, nullptr, false);
    if (!h.is_object() || !c.is_object()) return v;
    // collection.go LoadByToken: the provisioner is found by iss + ":" + kid.
    if (h.value("alg", "") != "ES256" || h.value("kid", "") != opts_.kid || c.value("iss", "") != opts_.provisioner) return v;
    if (!verify_es256(provisioner_key_.get(), token.substr(0, d2), *signature)) return v;
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    const auto number = [&](const char* k) { return c.contains(k) && c[k].is_number_integer() ? c[k].get<std::int64_t>() : -1; };
    if (number("exp") < 0 || now > number("exp") + 60 || (number("nbf") >= 0 && now < number("nbf") - 60)) return v;
    // matchesAudience: https://<dns>/1.0/<endpoint>, the port ignored.
    std::string aud = c.contains("aud") && c["aud"].is_string() ? c["aud"].get<std::string>() : "";
    const std::string want_prefix = "https://" + opts_.dns_name;
    const auto slash = aud.find('/', want_prefix.size());
    if (aud.rfind(want_prefix, 0) != 0 || slash == std::string::npos || aud.substr(slash) != "/1.0/" + endpoint) return v;
    v.subject = c.value("sub", "");
    if (v.subject.empty()) return v;
    const std::string jti = c.value("jti", "");
    {
        std::lock_guard lock(mutex_);
        if (!used_jti_.insert(jti.empty() ? token : jti).second) {
            v.message = "token already used";  // authority/authorize.go
            return v;
        }
    }
    if (c.contains("sans") && c["sans"].is_array()) {
        for (const auto& s : c["sans"]) v.sans.push_back(s.get<std::string>());
    }
    if (v.sans.empty()) v.sans.push_back(v.subject);
    v.status = 0;
    return v;
}

void fake_stepca::sign(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) return error(res, 400, bad_request("error reading request body"));
    if (!body.contains("csr") || !body["csr"].is_string()) return error(res, 400, bad_request("missing csr"));
    const std::string pem = body["csr"];
    bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    bridge::x509_req_ptr csr(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (!csr || X509_REQ_verify(csr.get(), X509_REQ_get0_pubkey(csr.get())) != 1) {
        take_openssl_errors();
        return error(res, 400, bad_request("invalid csr"));
    }
    if (body.value("ott", "").empty()) return error(res, 400, bad_request("missing ott"));
    auto v = check_token(body["ott"], "sign");
    if (v.status != 0) return error(res, v.status, v.message);
    if (int status = fail_next_sign_.exchange(0); status != 0) return error(res, status, "injected failure");
    // commonNameSliceValidator: the CN must be empty or one of [sub] + sans.
    const std::string cn = bridge::csr_common_name(csr.get());
    if (!cn.empty() && cn != v.subject && std::find(v.sans.begin(), v.sans.end(), cn) == v.sans.end()) {
        return error(res, 403, forbidden("certificate request does not contain the valid common name - got " + cn));
    }
    auto serial = bridge::random_serial();
    bridge::certificate_profile profile;
    profile.validity = std::chrono::hours(24);  // the provisioner's default TLS duration
    auto cert = bridge::make_device_certificate(csr.get(), v.subject, ca_cert_.get(), ca_key_.get(), serial.get(), profile);
    {
        std::lock_guard lock(mutex_);
        issued_.insert(bridge::serial_hex_to_decimal(serial_hex(serial.get())));
    }
    const std::string crt = bridge::to_pem(cert.get());
    const std::string ca = bridge::to_pem(ca_cert_.get());
    res.status = 201;
    res.set_content(json{{"crt", crt}, {"ca", ca}, {"certChain", {crt, ca}}, {"tlsOptions", json::object()}}.dump(),
                    "application/json");
}

void fake_stepca::revoke(const httplib::Request& req, httplib::Response& res) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object()) return error(res, 400, bad_request("error reading request body"));
    std::string serial = body.value("serial", "");
    if (serial.empty()) return error(res, 400, bad_request("missing serial"));
    // big.Int SetString(s, 0): decimal, or hex with 0x; normalized to decimal.
    BIGNUM* raw = nullptr;
    const bool hex = serial.rfind("0x", 0) == 0;
    const int used = hex ? BN_hex2bn(&raw, serial.c_str() + 2) : BN_dec2bn(&raw, serial.c_str());
    bignum_ptr bn(raw);
    if (used == 0 || static_cast<std::size_t>(used) != serial.size() - (hex ? 2 : 0)) {
        return error(res, 400, bad_request("'" + serial + "' is not a valid serial number"));
    }
    char* dec = BN_bn2dec(bn.get());
    serial = dec;
    OPENSSL_free(dec);
    const int code = body.value("reasonCode", 0);
    if (code < 0 || code > 10) return error(res, 400, bad_request("reasonCode out of bounds"));
    if (!body.value("passive", false)) return error(res, 501, "non-passive revocation not implemented");
    if (body.value("ott", "").empty()) return error(res, 400, bad_request("missing ott or client certificate"));
    auto v = check_token(body["ott"], "revoke");
    if (v.status != 0) return error(res, v.status, v.message);
    if (v.subject != serial) return error(res, 403, forbidden("token subject does not match the serial"));
    std::lock_guard lock(mutex_);
    if (!revoked_.insert(serial).second) {
        return error(res, 400, bad_request("certificate with serial number '" + serial + "' is already revoked"));
    }
    res.set_content(json{{"status", "ok"}}.dump(), "application/json");
}

std::size_t fake_stepca::signed_count() const {
    std::lock_guard lock(mutex_);
    return issued_.size();
}

bool fake_stepca::is_revoked(const std::string& decimal_serial) const {
    std::lock_guard lock(mutex_);
    return revoked_.count(decimal_serial) > 0;
}

std::size_t fake_stepca::revoked_count() const {
    std::lock_guard lock(mutex_);
    return revoked_.size();
}

}  // namespace devicegate::test
