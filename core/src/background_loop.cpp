#include "devicegate/background_loop.hpp"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

namespace devicegate {

background_loop::background_loop(std::string name, body_fn body) : name_(std::move(name)), body_(std::move(body)) {}

background_loop::~background_loop() { stop(); }

void background_loop::start() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable()) return;
    stop_ = false;
    thread_ = std::thread([this] { body_(*this); });
    // Linux limits thread names to 15 characters plus the terminator.
    ::pthread_setname_np(thread_.native_handle(), name_.substr(0, 15).c_str());
}

void background_loop::stop() noexcept {
    std::thread joined;
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
        joined.swap(thread_);
    }
    cv_.notify_all();
    if (joined.joinable() && joined.get_id() != std::this_thread::get_id()) joined.join();
    else if (joined.joinable()) joined.detach();  // stop() from the body itself: cannot join oneself
}

void background_loop::wake() noexcept {
    {
        std::lock_guard lock(mutex_);
        woken_ = true;
    }
    cv_.notify_all();
}

bool background_loop::stopping() const noexcept {
    std::lock_guard lock(mutex_);
    return stop_;
}

bool background_loop::wait_until(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, deadline, [this] { return stop_ || woken_; });
    woken_ = false;
    return !stop_;
}

bool background_loop::wait_for(std::chrono::steady_clock::duration d) {
    return wait_until(std::chrono::steady_clock::now() + d);
}

void broker_thread_guard::fail(const char* function) noexcept {
    std::fprintf(stderr, "devicegate: %s called off the broker thread (a bug: mosquitto_* and the plugin's state "
                         "belong to the broker thread)\n", function);
    std::abort();
}

}  // namespace devicegate
