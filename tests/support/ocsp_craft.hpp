#pragma once
// Builds OCSP responses the way a responder would, with whatever flaw a test asks for
// (another signer, another certificate, stale dates, a wrong nonce, an error status).
#include "devicegate/ocsp.hpp"
#include "test_pki.hpp"

#include <openssl/pem.h>

#include <ctime>
#include <stdexcept>
#include <string>

namespace devicegate::test {

inline evp_pkey_ptr load_key(const std::string& path) {
    bio_ptr bio(BIO_new_file(path.c_str(), "r"));
    return evp_pkey_ptr(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

enum class nonce_mode { none, echo, wrong };

struct response_spec {
    int status = V_OCSP_CERTSTATUS_GOOD;
    std::time_t this_update = std::time(nullptr) - 60;
    std::time_t next_update = std::time(nullptr) + 3600;  // 0: none
    std::string signer = "subca-a";  // subca-a, subca-b, or a devices/ name (delegated)
    std::string about = "";          // another device's certificate id instead of the asked one
    nonce_mode nonce = nonce_mode::none;
    int response_status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
};

// Builds a response the way a responder would, with whatever flaw the spec asks for.
inline std::string craft(const ocsp_query& q, const response_spec& spec) {
    auto issuer = load_cert(pki("subca-a.crt"));
    ocsp_basic_ptr basic(OCSP_BASICRESP_new());
    ocsp_certid_ptr other;
    OCSP_CERTID* id = q.id.get();
    if (!spec.about.empty()) {
        auto cert = load_cert(device_cert(spec.about));
        other.reset(OCSP_cert_to_id(EVP_sha1(), cert.get(), issuer.get()));
        id = other.get();
    }
    asn1_time_ptr thisupd(ASN1_TIME_set(nullptr, spec.this_update));
    asn1_time_ptr nextupd(ASN1_TIME_set(nullptr, spec.next_update));
    asn1_time_ptr revoked(ASN1_TIME_set(nullptr, spec.this_update - 100));
    OCSP_basic_add1_status(basic.get(), id, spec.status, OCSP_REVOKED_STATUS_KEYCOMPROMISE,
                           spec.status == V_OCSP_CERTSTATUS_REVOKED ? revoked.get() : nullptr, thisupd.get(),
                           spec.next_update != 0 ? nextupd.get() : nullptr);
    if (spec.nonce == nonce_mode::echo) OCSP_copy_nonce(basic.get(), q.request.get());
    if (spec.nonce == nonce_mode::wrong) {
        unsigned char junk[16] = {1, 2, 3};
        OCSP_basic_add1_nonce(basic.get(), junk, sizeof junk);
    }
    const bool ca = spec.signer == "subca-a" || spec.signer == "subca-b";
    auto signer = load_cert(ca ? pki(spec.signer + ".crt") : device_cert(spec.signer));
    auto key = load_key(ca ? pki(spec.signer + ".key") : device_key(spec.signer));
    if (OCSP_basic_sign(basic.get(), signer.get(), key.get(), EVP_sha256(), nullptr, 0) != 1) {
        throw std::runtime_error("OCSP_basic_sign failed");
    }
    ocsp_response_ptr response(OCSP_response_create(spec.response_status, basic.get()));
    unsigned char* der = nullptr;
    int len = i2d_OCSP_RESPONSE(response.get(), &der);
    std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    return out;
}

}  // namespace devicegate::test
