#pragma once
// A logger whose lines a test can search (background threads log into it).
#include "devicegate/log.hpp"

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

namespace devicegate::test {

class log_capture {
public:
    logger sink() {
        return logger([this](log_level, std::string_view line) {
            std::lock_guard lock(mutex_);
            lines_.emplace_back(line);
        });
    }
    bool contains(const std::string& needle) const {
        std::lock_guard lock(mutex_);
        return std::any_of(lines_.begin(), lines_.end(),
                           [&](const std::string& l) { return l.find(needle) != std::string::npos; });
    }
    std::size_t count(const std::string& needle) const {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(std::count_if(lines_.begin(), lines_.end(), [&](const std::string& l) {
            return l.find(needle) != std::string::npos;
        }));
    }
    /// Every line so far, one per line (for a failing test's message).
    std::string text() const {
        std::lock_guard lock(mutex_);
        std::string out;
        for (const auto& l : lines_) out += l + "\n";
        return out;
    }

private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

}  // namespace devicegate::test
