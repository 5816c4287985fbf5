#include "backend.hpp"

#include "devicegate/log.hpp"

namespace devicegate::worker {

std::string excerpt(const std::string& body) { return log_safe(body, 300); }

void fail(target t, const http_response& r, std::string_view call, worker_metrics& metrics) {
    const std::string where = std::string(to_string(t)) + ": " + std::string(call) + ": ";
    if (!r) {
        metrics.error(t, error_kind::transport);
        throw target_failure(t, true, 0, "", where + "transport error: " + r.error);
    }
    const long s = r.status;
    error_kind kind = s == 429 ? error_kind::http_429
                      : s >= 500 ? error_kind::http_5xx
                      : (s == 401 || s == 403) ? error_kind::auth
                                                : error_kind::http_4xx;
    metrics.error(t, kind);
    const bool retry = s == 408 || s == 429 || s >= 500;
    std::string body = excerpt(r.body);
    throw target_failure(t, retry, s, body, where + "HTTP " + std::to_string(s) + (body.empty() ? "" : " " + body));
}

}  // namespace devicegate::worker
