#pragma once
// The bridge_service on cpp-httplib over OpenSSL (Debian libcpp-httplib-dev, built with
// CPPHTTPLIB_OPENSSL_SUPPORT): the routes, the body limit, the per-source rate limit of
// POSTs, JSON errors for everything httplib refuses itself, and the TLS context that asks
// for (but does not require) a client certificate, which renew/simplereenroll check.
#include "service.hpp"

#include <httplib.h>

#include <memory>

namespace devicegate::bridge {

/// Adds the routes of `service` to `server` (which must outlive neither).
void install_routes(httplib::Server& server, bridge_service& service, const logger& log);

/// GET /crl only, for a plain-HTTP listener: CRLs are signed, and brokers' crl_url and CRL
/// Distribution Points are plain HTTP by custom (RFC 5280 4.2.1.13), as step-ca's insecureAddress.
void install_crl_route(httplib::Server& server, bridge_service& service);

/// An HTTPS server with the configured certificate and key; client certificates are asked
/// for and handed to the routes unverified (the routes verify them against the tenant chain,
/// so that an expired or revoked certificate gets a JSON refusal rather than a TLS alert).
/// Throws std::runtime_error naming the file that failed.
std::unique_ptr<httplib::SSLServer> make_https_server(const bridge_config& config, X509* sub_ca);

}  // namespace devicegate::bridge
