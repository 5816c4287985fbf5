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

private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

}  // namespace devicegate::test
