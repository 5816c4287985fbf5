// EST (RFC 7030) under /.well-known/est/: cacerts, simpleenroll (enrollment token) and
// simplereenroll (the current certificate over mTLS). Requests carry a base64 DER PKCS#10
// (4.2.1, Content-Type application/pkcs10); responses are base64 DER "certs-only" CMS
// SignedData (application/pkcs7-mime, 4.1.3 and 4.2.3), as `openssl crl2pkcs7 -nocrl` makes.
#include "devicegate/device_id.hpp"
#include "devicegate/pki.hpp"
#include "service.hpp"

#include <openssl/pkcs7.h>

namespace devicegate::bridge {

namespace {

using pkcs7_ptr = std::unique_ptr<PKCS7, c_deleter<PKCS7_free>>;

/// Base64 with 64-character lines, as RFC 7030's examples (and `openssl base64`) have them.
std::string base64_lines(std::string_view der) {
    const std::string flat = base64_encode(der);
    std::string out;
    for (std::size_t i = 0; i < flat.size(); i += 64) out += flat.substr(i, 64) + "\n";
    return out;
}

std::string certs_only(const std::vector<X509*>& certs) {
    pkcs7_ptr p7(PKCS7_new());
    if (!p7 || PKCS7_set_type(p7.get(), NID_pkcs7_signed) != 1) throw std::runtime_error("cannot build PKCS#7");
    // Degenerate SignedData: content type data without content, no signers (RFC 7030 4.1.3).
    ASN1_OBJECT_free(p7->d.sign->contents->type);
    p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
    for (X509* c : certs) {
        if (PKCS7_add_certificate(p7.get(), c) != 1) throw std::runtime_error("cannot add a certificate to PKCS#7");
    }
    unsigned char* der = nullptr;
    const int len = i2d_PKCS7(p7.get(), &der);
    if (len <= 0) throw std::runtime_error("cannot encode PKCS#7");
    std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    return out;
}

api_response pkcs7_response(const std::vector<X509*>& certs) {
    api_response r;
    r.status = 200;
    r.content_type = "application/pkcs7-mime; smime-type=certs-only";
    r.headers.emplace_back("Content-Transfer-Encoding", "base64");
    r.body = base64_lines(certs_only(certs));
    return r;
}

/// The PKCS#10 of an EST request body: base64 (whitespace allowed) of DER.
x509_req_ptr decode_est_csr(const std::string& body) {
    std::string compact;
    for (char c : body) {
        if (c != '\r' && c != '\n' && c != ' ' && c != '\t') compact += c;
    }
    if (compact.empty() || compact.size() % 4 != 0 || compact.size() > 4 * max_csr_bytes / 3) return nullptr;
    std::string der(compact.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                                  reinterpret_cast<const unsigned char*>(compact.data()), static_cast<int>(compact.size()));
    if (n <= 0) return nullptr;
    std::size_t len = static_cast<std::size_t>(n);
    if (compact.ends_with("==")) len -= 2;
    else if (compact.ends_with("=")) len -= 1;
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    x509_req_ptr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(len)));
    if (req && p != reinterpret_cast<const unsigned char*>(der.data()) + len) return nullptr;  // trailing bytes
    return req;
}

}  // namespace

api_response bridge_service::est_cacerts() const {
    return pkcs7_response({trust_->certificate(ca_role::sub_ca), trust_->certificate(ca_role::ica),
                           trust_->certificate(ca_role::root)});
}

api_response bridge_service::est_issue(const api_request& r, const char* op, bool reenroll) {
    x509_req_ptr csr = decode_est_csr(r.body);
    if (!csr) {
        take_openssl_errors();
        return refuse(op, r, "-", 400, "csr_unparsable", "the body must be a base64 DER PKCS#10 (RFC 7030 4.2.1)");
    }
    // EST has no device id in the path: the CSR's CN names the device, and the token or the
    // client certificate must be for that same id.
    const std::string id = csr_common_name(csr.get());
    if (!is_safe_device_id(id)) {
        return refuse(op, r, id, 400, "csr_bad_subject", "the subject must be exactly one CN holding a valid device id");
    }
    auto checked = check_csr(std::move(csr), id);
    if (checked.problem != csr_problem::ok) return refuse(op, r, id, 400, to_string(checked.problem), checked.detail);
    std::optional<held_token> held;
    auto refused = reenroll ? authenticate_renewal(r, id, op) : authenticate_enrollment(r, id, op, held);
    if (refused) return *refused;
    auto result = issue_checked(r, id, std::move(checked.csr), checked.key_type, op, nullptr);
    if (auto* failed = std::get_if<api_response>(&result)) return give_back(held, std::move(*failed), op, r, id);
    auto certs = parse_certificates(std::get<issued>(result).cert.certificate_pem, "issued certificate");
    return pkcs7_response({certs.at(0).get()});
}

api_response bridge_service::est_simpleenroll(const api_request& r) { return est_issue(r, "est_simpleenroll", false); }

api_response bridge_service::est_simplereenroll(const api_request& r) { return est_issue(r, "est_simplereenroll", true); }

}  // namespace devicegate::bridge
