#pragma once
// One RAII header for libcurl, and the one place where its errors become values. Background
// threads only: every call blocks on the network (bounded by the timeout).
#include "devicegate/c_handle.hpp"

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace devicegate {

// libcurl is loaded on first use (http.cpp): these call curl_easy_cleanup and
// curl_slist_free_all through it.
void free_curl_easy(CURL* handle) noexcept;
void free_curl_slist(curl_slist* list) noexcept;
using curl_ptr = std::unique_ptr<CURL, c_deleter<free_curl_easy>>;
using curl_slist_ptr = std::unique_ptr<curl_slist, c_deleter<free_curl_slist>>;

struct http_response {
    long status = 0;             // 0 when the transfer failed
    std::string error;           // transport error, "" on success
    std::string body;
    std::string etag;
    std::string last_modified;
    std::string retry_after;     // the Retry-After header as sent ("" if none)
    explicit operator bool() const noexcept { return error.empty(); }
};

struct http_get_options {
    std::chrono::milliseconds timeout{10000};
    std::size_t max_body_bytes = 64u << 20;
    std::string if_none_match;       // ETag of the copy we have
    std::string if_modified_since;   // Last-Modified of the copy we have
    std::vector<std::string> headers;  // extra "Name: value" lines (may carry secrets: never log them)
    /// A new connection for this request, closed after it. libcurl re-sends a request when a
    /// reused keep-alive connection dies before any answer (Curl_retry_request); a fresh one is
    /// never re-sent, so a non-idempotent POST goes out at most once.
    bool fresh_connection = false;
};

/// A reusable client (keeps the connection alive between calls to the same host). Making one
/// costs nothing: its first request loads libcurl (a CRL watcher without URLs never does); if
/// libcurl cannot be loaded, the request fails with the cause.
class http_client {
public:
    http_client();
    http_response get(const std::string& url, const http_get_options& options);
    /// POSTs `body` with the given content type (OCSP: application/ocsp-request).
    http_response post(const std::string& url, const std::string& body, const std::string& content_type,
                       const http_get_options& options);
    /// PUTs `body` (hawkBit: an existing target metadata entry).
    http_response put(const std::string& url, const std::string& body, const std::string& content_type,
                      const http_get_options& options);
    /// DELETE without a body (decommission: ThingsBoard devices, hawkBit targets).
    http_response del(const std::string& url, const http_get_options& options);

private:
    http_response perform(const std::string& url, const http_get_options& options, const std::string* body,
                          const std::string& content_type, const char* method = nullptr);
    curl_ptr curl_;  // made by the first request
};

}  // namespace devicegate
