#pragma once
// The one-time tokens step-ca's JWK provisioners accept (smallstep/certificates
// authority/provisioner/jwk.go authorizeToken; step's token package): a compact JWS, ES256
// (ECDSA P-256 with SHA-256, signature raw R||S, RFC 7518 3.4), header {"alg","kid","typ"}.
#include "devicegate/ossl.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace devicegate::bridge {

std::string base64url(std::string_view data);

/// The RFC 7638 SHA-256 thumbprint (base64url) of an EC P-256 public key: step's default kid.
std::string jwk_thumbprint(EVP_PKEY* key);

/// Signs `claims` with a P-256 key as a compact JWS. Throws std::runtime_error.
std::string sign_es256_jwt(EVP_PKEY* key, const std::string& kid, const nlohmann::json& claims);

/// 32 random bytes in hex, as step's tokens' jti.
std::string random_jti();

}  // namespace devicegate::bridge
