#pragma once
// One RAII header for OpenSSL: unique_ptr aliases with zero-size deleters, and the
// one place where OpenSSL's error queue is turned into text.
#include "devicegate/c_handle.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

namespace devicegate {

inline void free_x509_stack(STACK_OF(X509)* s) noexcept { sk_X509_pop_free(s, X509_free); }
inline void free_openssl_bytes(unsigned char* p) noexcept { OPENSSL_free(p); }  // OPENSSL_free is a macro

using x509_ptr = std::unique_ptr<X509, c_deleter<X509_free>>;
using x509_crl_ptr = std::unique_ptr<X509_CRL, c_deleter<X509_CRL_free>>;
using x509_store_ptr = std::unique_ptr<X509_STORE, c_deleter<X509_STORE_free>>;
using x509_store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, c_deleter<X509_STORE_CTX_free>>;
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), c_deleter<free_x509_stack>>;
using bio_ptr = std::unique_ptr<BIO, c_deleter<BIO_free_all>>;
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, c_deleter<EVP_PKEY_free>>;
using asn1_integer_ptr = std::unique_ptr<ASN1_INTEGER, c_deleter<ASN1_INTEGER_free>>;
using asn1_time_ptr = std::unique_ptr<ASN1_TIME, c_deleter<ASN1_TIME_free>>;
using eku_ptr = std::unique_ptr<EXTENDED_KEY_USAGE, c_deleter<EXTENDED_KEY_USAGE_free>>;
using openssl_bytes_ptr = std::unique_ptr<unsigned char, c_deleter<free_openssl_bytes>>;  // i2d_* output
using openssl_strings_ptr = std::unique_ptr<STACK_OF(OPENSSL_STRING), c_deleter<X509_email_free>>;  // X509_get1_*
using general_names_ptr = std::unique_ptr<GENERAL_NAMES, c_deleter<GENERAL_NAMES_free>>;
using issuing_dist_point_ptr = std::unique_ptr<ISSUING_DIST_POINT, c_deleter<ISSUING_DIST_POINT_free>>;

/// Drains OpenSSL's thread-local error queue into one line ("" when empty).
std::string take_openssl_errors();

}  // namespace devicegate
