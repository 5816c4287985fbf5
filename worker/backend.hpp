#pragma once
// What ThingsBoard and hawkBit clients share: the failure type the worker loop acts on and
// the retry classification of docs/integrations.md §D (retry transport errors, 408, 429 and 5xx; never
// other 4xx).
#include "devicegate/http.hpp"
#include "metrics.hpp"

#include <stdexcept>
#include <string>
#include <string_view>

namespace devicegate::worker {

struct target_failure : std::runtime_error {
    target_failure(target which_target, bool may_retry, long http_status, std::string excerpt, const std::string& what)
        : std::runtime_error(what), which(which_target), retryable(may_retry), status(http_status),
          body_excerpt(std::move(excerpt)) {}
    target which;
    bool retryable;
    long status;               // 0: transport error
    std::string body_excerpt;  // log-safe, bounded
};

/// Counts the failure and throws it. `call` is "POST /api/..." (no secrets).
[[noreturn]] void fail(target t, const http_response& r, std::string_view call, worker_metrics& metrics);

/// Log-safe text for an operator: "<target>: <call>: HTTP 503 {...}" (bounded).
std::string excerpt(const std::string& body);

}  // namespace devicegate::worker
