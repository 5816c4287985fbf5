#include "http_api.hpp"

#include <openssl/ssl.h>

namespace devicegate::bridge {

namespace {

api_request to_api_request(const httplib::Request& req) {
    api_request r;
    if (req.matches.size() > 1) r.device_id = req.matches[1];
    r.body = req.body;
    r.authorization = req.get_header_value("Authorization");
    r.api_key = req.get_header_value("X-Api-Key");
    r.source = req.remote_addr;
    if (req.ssl != nullptr) r.peer_certificate = SSL_get0_peer_certificate(req.ssl);
    return r;
}

void send(httplib::Response& res, const api_response& a) {
    res.status = a.status;
    for (const auto& [name, value] : a.headers) res.set_header(name, value);
    res.set_content(a.body, a.content_type);
}

using member = api_response (bridge_service::*)(const api_request&);

httplib::Server::Handler route(bridge_service& service, member m) {
    return [&service, m](const httplib::Request& req, httplib::Response& res) { send(res, (service.*m)(to_api_request(req))); };
}

std::string_view status_code_name(int status) {
    switch (status) {
        case 404: return "not_found";
        case 405: return "method_not_allowed";
        case 413: return "body_too_large";
        case 414: return "uri_too_long";
        case 429: return "rate_limited";
        default: return status >= 500 ? "internal_error" : "bad_request";
    }
}

}  // namespace

void install_routes(httplib::Server& server, bridge_service& service, const logger& log) {
    constexpr const char* id = "/devices/([^/]{1,256})";
    server.Post(std::string(id) + "/enroll", route(service, &bridge_service::enroll));
    server.Post(std::string(id) + "/renew", route(service, &bridge_service::renew));
    server.Post(std::string(id) + "/revoke", route(service, &bridge_service::revoke));
    install_crl_route(server, service);
    server.Get("/.well-known/est/cacerts",
               [&service](const httplib::Request&, httplib::Response& res) { send(res, service.est_cacerts()); });
    server.Post("/.well-known/est/simpleenroll", route(service, &bridge_service::est_simpleenroll));
    server.Post("/.well-known/est/simplereenroll", route(service, &bridge_service::est_simplereenroll));
    server.set_payload_max_length(service.config().max_body_bytes);  // after install_crl_route
    // Only POSTs are limited: the CRL and the CA certificates are public and cheap, and a
    // broker's crl_url may poll often.
    server.set_pre_routing_handler([&service, &log](const httplib::Request& req, httplib::Response& res) {
        if (req.method != "POST" || service.admit(req.remote_addr)) return httplib::Server::HandlerResponse::Unhandled;
        log.warning("devicegate-bridge: audit op=http device=- source=" + log_safe(req.remote_addr, 64) +
                    " outcome=rate_limited");
        send(res, error_response(429, "rate_limited", "too many requests from this address; retry in a minute"));
        res.set_header("Retry-After", "60");
        return httplib::Server::HandlerResponse::Handled;
    });
    // httplib's own refusals (413 for a body over the limit, 404, ...) get a JSON body too.
    server.set_error_handler(httplib::Server::HandlerWithResponse([&log](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        const auto code = status_code_name(res.status);
        if (res.status == 413) {
            log.warning("devicegate-bridge: audit op=http device=- source=" + log_safe(req.remote_addr, 64) +
                        " outcome=body_too_large");
        }
        std::string message = std::string(code) + ": " + log_safe(req.method, 16) + " " + log_safe(req.path, 100);
        // cpp-httplib 0.11 (Debian 12) reads a POST body without Content-Length or chunked
        // encoding until the peer closes or its 5 s read timeout, then answers 400.
        if (res.status == 400 && req.method == "POST" && !req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
            message += ": no Content-Length (send Content-Length: 0 for an empty body) or chunked encoding; the body was not read";
            log.warning("devicegate-bridge: audit op=http device=- source=" + log_safe(req.remote_addr, 64) + " outcome=body_unreadable");
        }
        send(res, error_response(res.status, code, message));
        return httplib::Server::HandlerResponse::Handled;
    }));
}

void install_crl_route(httplib::Server& server, bridge_service& service) {
    server.Get("/crl", [&service](const httplib::Request&, httplib::Response& res) { send(res, service.crl()); });
    server.set_payload_max_length(1024);
}

std::unique_ptr<httplib::SSLServer> make_https_server(const bridge_config& config, X509* sub_ca) {
    std::string failure;
    auto server = std::make_unique<httplib::SSLServer>([&](SSL_CTX& ctx) {
        SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
        if (SSL_CTX_use_certificate_chain_file(&ctx, config.tls_cert.c_str()) != 1) {
            failure = "tls_cert: cannot load " + config.tls_cert;
            return false;
        }
        if (SSL_CTX_use_PrivateKey_file(&ctx, config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(&ctx) != 1) {
            failure = "tls_key: cannot load it, or it does not match tls_cert";
            return false;
        }
        // Ask for a certificate from the tenant Sub-CA (the CA names list), accept whatever
        // comes: the routes verify it and answer with a JSON refusal.
        STACK_OF(X509_NAME)* names = sk_X509_NAME_new_null();
        sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(sub_ca)));
        SSL_CTX_set_client_CA_list(&ctx, names);
        SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
        return true;
    });
    if (!server->is_valid()) throw std::runtime_error(failure.empty() ? "cannot create the TLS context" : failure);
    return server;
}

}  // namespace devicegate::bridge
