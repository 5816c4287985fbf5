#include "jwt.hpp"

#include "devicegate/pki.hpp"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <stdexcept>

namespace devicegate::bridge {

namespace {

using bignum_ptr = std::unique_ptr<BIGNUM, c_deleter<BN_free>>;
using ecdsa_sig_ptr = std::unique_ptr<ECDSA_SIG, c_deleter<ECDSA_SIG_free>>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, c_deleter<EVP_MD_CTX_free>>;

std::string fixed32(const BIGNUM* n) {
    unsigned char out[32];
    if (BN_bn2binpad(n, out, sizeof out) != 32) throw std::runtime_error("EC coordinate does not fit 32 bytes");
    return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

bignum_ptr param(EVP_PKEY* key, const char* name) {
    BIGNUM* n = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &n) != 1) throw std::runtime_error("not an EC P-256 key");
    return bignum_ptr(n);
}

}  // namespace

std::string base64url(std::string_view data) {
    std::string s = base64_encode(data);
    for (char& c : s) {
        if (c == '+') c = '-';
        else if (c == '/') c = '_';
    }
    while (!s.empty() && s.back() == '=') s.pop_back();
    return s;
}

std::string jwk_thumbprint(EVP_PKEY* key) {
    // RFC 7638 3.2: the required members in lexicographic order, no whitespace.
    const std::string x = base64url(fixed32(param(key, OSSL_PKEY_PARAM_EC_PUB_X).get()));
    const std::string y = base64url(fixed32(param(key, OSSL_PKEY_PARAM_EC_PUB_Y).get()));
    const std::string canonical = R"({"crv":"P-256","kty":"EC","x":")" + x + R"(","y":")" + y + R"("})";
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(canonical.data()), canonical.size(), digest);
    return base64url(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

std::string sign_es256_jwt(EVP_PKEY* key, const std::string& kid, const nlohmann::json& claims) {
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC || EVP_PKEY_get_bits(key) != 256) {
        throw std::runtime_error("the provisioner key must be EC P-256 (ES256)");
    }
    const nlohmann::json header{{"alg", "ES256"}, {"kid", kid}, {"typ", "JWT"}};
    const std::string input = base64url(header.dump()) + "." + base64url(claims.dump());
    md_ctx_ptr ctx(EVP_MD_CTX_new());
    std::size_t len = 0;
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
        throw std::runtime_error("ES256 signing failed: " + take_openssl_errors());
    }
    std::string der(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
        throw std::runtime_error("ES256 signing failed: " + take_openssl_errors());
    }
    // JWS wants R||S, 32 bytes each (RFC 7518 3.4), not OpenSSL's DER.
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    ecdsa_sig_ptr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)));
    if (!sig) throw std::runtime_error("cannot decode the ECDSA signature");
    const std::string raw = fixed32(ECDSA_SIG_get0_r(sig.get())) + fixed32(ECDSA_SIG_get0_s(sig.get()));
    return input + "." + base64url(raw);
}

std::string random_jti() {
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("no randomness for a jti");
    std::string hex = to_hex(bytes, sizeof bytes);
    for (char& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return hex;
}

}  // namespace devicegate::bridge
