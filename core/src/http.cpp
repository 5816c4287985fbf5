#include "devicegate/http.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>

namespace devicegate {

namespace {

struct transfer {
    std::string* body;
    std::size_t limit;
    bool overflow = false;
    http_response* response;
    CURL* curl = nullptr;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* t = static_cast<transfer*>(user);
    const std::size_t n = size * count;
    if (t->body->size() + n > t->limit) {
        t->overflow = true;
        return 0;  // aborts the transfer
    }
    if (t->body->empty()) {
        // One allocation of the announced size (bounded by the limit) instead of doublings
        // that briefly hold 1.5x the body.
        curl_off_t announced = -1;
        if (curl_easy_getinfo(t->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK && announced > 0) {
            t->body->reserve(std::min(static_cast<std::size_t>(announced), t->limit));
        }
    }
    t->body->append(data, n);
    return n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto* t = static_cast<transfer*>(user);
    std::string line(data, size * count);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        value.erase(value.find_last_not_of(" \t\r\n") + 1);
        if (name == "etag") t->response->etag = value;
        if (name == "last-modified") t->response->last_modified = value;
        if (name == "retry-after") t->response->retry_after = value;
    }
    return size * count;
}

// curl_slist_append returns NULL on failure and leaves the list as it was (still ours to free).
void append_header(curl_slist_ptr& list, const std::string& line) {
    if (curl_slist* head = curl_slist_append(list.get(), line.c_str())) {
        (void)list.release();
        list.reset(head);
    }
}

}  // namespace

http_client::http_client() {
    static std::once_flag init;
    std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    curl_.reset(curl_easy_init());
}

http_response http_client::get(const std::string& url, const http_get_options& options) {
    return perform(url, options, nullptr, "");
}

http_response http_client::post(const std::string& url, const std::string& body, const std::string& content_type,
                                const http_get_options& options) {
    return perform(url, options, &body, content_type);
}

http_response http_client::put(const std::string& url, const std::string& body, const std::string& content_type,
                               const http_get_options& options) {
    return perform(url, options, &body, content_type, "PUT");
}

http_response http_client::del(const std::string& url, const http_get_options& options) {
    return perform(url, options, nullptr, "", "DELETE");
}

http_response http_client::perform(const std::string& url, const http_get_options& options, const std::string* body,
                                   const std::string& content_type, const char* method) {
    http_response r;
    if (!curl_) {
        r.error = "cannot create a curl handle";
        return r;
    }
    CURL* c = curl_.get();
    curl_easy_reset(c);
    transfer t{&r.body, options.max_body_bytes, false, &r, c};
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, options.fresh_connection ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, options.fresh_connection ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.timeout.count()));
    // A Content-Length above the limit is refused before the body is read; the write
    // callback enforces the limit for chunked or lying responses.
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_body_bytes));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_slist_ptr headers;
    if (!options.if_none_match.empty()) append_header(headers, "If-None-Match: " + options.if_none_match);
    if (!options.if_modified_since.empty()) append_header(headers, "If-Modified-Since: " + options.if_modified_since);
    for (const auto& h : options.headers) append_header(headers, h);
    if (body != nullptr) {
        append_header(headers, "Content-Type: " + content_type);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    }
    if (method != nullptr) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    CURLcode rc = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);  // the list is freed below; the handle is reused
    headers.reset();
    if (t.overflow || rc == CURLE_FILESIZE_EXCEEDED) {
        r.error = "response larger than " + std::to_string(options.max_body_bytes) + " bytes";
        r.body.clear();
        return r;
    }
    if (rc != CURLE_OK) {
        r.error = curl_easy_strerror(rc);
        return r;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

}  // namespace devicegate
