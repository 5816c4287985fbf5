#pragma once
// Waiting on a condition instead of a fixed sleep: polls until it holds or a deadline passes.
#include <chrono>
#include <thread>

namespace devicegate::test {

template <class Done>
bool eventually(Done done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

}  // namespace devicegate::test
