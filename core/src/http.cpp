#include "devicegate/http.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace devicegate {

namespace {

// libcurl is opened on first use, not linked: a broker without CRL URLs, CRL Distribution
// Points or OCSP never loads it, nor the TLS, LDAP, SSH, RTMP, HTTP/2, ... libraries it pulls
// in (~3.7 MiB of a broker's RSS, issue 13). "libcurl.so.4" is libcurl's soname since 7.16.
struct curl_api {
    decltype(&::curl_global_init) global_init;
    decltype(&::curl_easy_init) easy_init;
    decltype(&::curl_easy_cleanup) easy_cleanup;
    decltype(&::curl_easy_reset) easy_reset;
    decltype(&::curl_easy_setopt) easy_setopt;
    decltype(&::curl_easy_perform) easy_perform;
    decltype(&::curl_easy_getinfo) easy_getinfo;
    decltype(&::curl_easy_strerror) easy_strerror;
    decltype(&::curl_slist_append) slist_append;
    decltype(&::curl_slist_free_all) slist_free_all;
};

template <typename F>
void bind(void* lib, const char* name, F& out) {
    out = reinterpret_cast<F>(::dlsym(lib, name));
    if (out == nullptr) throw std::runtime_error(std::string("libcurl.so.4 has no ") + name);
}

curl_api load_curl() {
    void* lib = ::dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);  // kept open for the process's life
    if (lib == nullptr) {
        const char* why = ::dlerror();
        throw std::runtime_error(std::string("cannot load libcurl (install libcurl4): ") + (why ? why : "dlopen failed"));
    }
    curl_api api{};
    bind(lib, "curl_global_init", api.global_init);
    bind(lib, "curl_easy_init", api.easy_init);
    bind(lib, "curl_easy_cleanup", api.easy_cleanup);
    bind(lib, "curl_easy_reset", api.easy_reset);
    bind(lib, "curl_easy_setopt", api.easy_setopt);
    bind(lib, "curl_easy_perform", api.easy_perform);
    bind(lib, "curl_easy_getinfo", api.easy_getinfo);
    bind(lib, "curl_easy_strerror", api.easy_strerror);
    bind(lib, "curl_slist_append", api.slist_append);
    bind(lib, "curl_slist_free_all", api.slist_free_all);
    if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
    return api;
}

/// Throws std::runtime_error when libcurl cannot be loaded (then again on the next call).
const curl_api& curl() {
    static const curl_api api = load_curl();  // thread-safe; a throw leaves it for the next call
    return api;
}

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
        if (curl().easy_getinfo(t->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced) == CURLE_OK &&
            announced > 0) {
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
    if (curl_slist* head = curl().slist_append(list.get(), line.c_str())) {
        (void)list.release();
        list.reset(head);
    }
}

}  // namespace

void free_curl_easy(CURL* handle) noexcept { curl().easy_cleanup(handle); }  // only made after curl() loaded
void free_curl_slist(curl_slist* list) noexcept { curl().slist_free_all(list); }

http_client::http_client() = default;  // libcurl is loaded by the first request, not here

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
        try {
            curl_.reset(curl().easy_init());
        } catch (const std::exception& e) {
            r.error = e.what();  // libcurl cannot be loaded; tried again on the next request
            return r;
        }
        if (!curl_) {
            r.error = "cannot create a curl handle";
            return r;
        }
    }
    const curl_api& api = curl();
    CURL* c = curl_.get();
    api.easy_reset(c);
    transfer t{&r.body, options.max_body_bytes, false, &r, c};
    api.easy_setopt(c, CURLOPT_URL, url.c_str());
    api.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    api.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    api.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    api.easy_setopt(c, CURLOPT_FRESH_CONNECT, options.fresh_connection ? 1L : 0L);
    api.easy_setopt(c, CURLOPT_FORBID_REUSE, options.fresh_connection ? 1L : 0L);
    api.easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options.timeout.count()));
    api.easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.timeout.count()));
    // A Content-Length above the limit is refused before the body is read; the write
    // callback enforces the limit for chunked or lying responses.
    api.easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_body_bytes));
    api.easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    api.easy_setopt(c, CURLOPT_WRITEDATA, &t);
    api.easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    api.easy_setopt(c, CURLOPT_HEADERDATA, &t);
    curl_slist_ptr headers;
    if (!options.if_none_match.empty()) append_header(headers, "If-None-Match: " + options.if_none_match);
    if (!options.if_modified_since.empty()) append_header(headers, "If-Modified-Since: " + options.if_modified_since);
    for (const auto& h : options.headers) append_header(headers, h);
    if (body != nullptr) {
        append_header(headers, "Content-Type: " + content_type);
        api.easy_setopt(c, CURLOPT_POST, 1L);
        api.easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
        api.easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
    }
    if (method != nullptr) api.easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    api.easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    CURLcode rc = api.easy_perform(c);
    api.easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);  // the list is freed below; the handle is reused
    headers.reset();
    if (t.overflow || rc == CURLE_FILESIZE_EXCEEDED) {
        r.error = "response larger than " + std::to_string(options.max_body_bytes) + " bytes";
        r.body.clear();
        return r;
    }
    if (rc != CURLE_OK) {
        r.error = api.easy_strerror(rc);
        return r;
    }
    api.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

}  // namespace devicegate
