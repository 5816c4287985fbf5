#pragma once
// Per-source-address token buckets: `per_minute` requests a minute, bursts up to the same
// number. Idle buckets are forgotten so that the table stays bounded.
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace devicegate::bridge {

class rate_limiter {
public:
    using clock = std::chrono::steady_clock;
    explicit rate_limiter(std::size_t per_minute, std::size_t max_sources = 100000)
        : rate_per_second_(static_cast<double>(per_minute) / 60.0), burst_(static_cast<double>(per_minute)),
          max_sources_(max_sources) {}

    /// True when a request from `source` may proceed now (and counts it).
    bool allow(const std::string& source, clock::time_point now = clock::now()) {
        std::lock_guard lock(mutex_);
        if (buckets_.size() >= max_sources_) forget_idle(now);
        auto [it, fresh] = buckets_.try_emplace(source, bucket{burst_, now});
        bucket& b = it->second;
        if (!fresh) {
            const double elapsed = std::chrono::duration<double>(now - b.last).count();
            b.tokens = std::min(burst_, b.tokens + elapsed * rate_per_second_);
            b.last = now;
        }
        if (b.tokens < 1.0) return false;
        b.tokens -= 1.0;
        return true;
    }

private:
    struct bucket {
        double tokens;
        clock::time_point last;
    };
    void forget_idle(clock::time_point now) {
        // A bucket idle for a full refill period is indistinguishable from a new one.
        const auto refill = std::chrono::duration<double>(burst_ / rate_per_second_);
        std::erase_if(buckets_, [&](const auto& kv) { return now - kv.second.last > refill; });
        if (buckets_.size() >= max_sources_) buckets_.clear();  // a flood of sources: start over
    }
    double rate_per_second_;
    double burst_;
    std::size_t max_sources_;
    std::mutex mutex_;
    std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace devicegate::bridge
