#pragma once
// The one background-thread mechanism of the core: a std::thread running a body, a stop flag,
// and a wake-up that cuts a wait short. Every component that owns a thread (crl_watcher,
// ocsp_fetcher, denylist_sync, job_producer) uses it instead of its own thread, mutex,
// condition variable and stop flag. The body runs once on the thread and loops itself:
//
//     background_loop loop("dg-crl", [&](background_loop& l) {
//         while (l.wait_for(poll_interval)) poll();  // false once stop() was called
//     });
//
// wake() is sticky: a wake-up that arrives while the body is busy ends the next wait at once,
// so a producer that queues work under its own lock and then calls wake() is never missed.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace devicegate {

class background_loop {
public:
    using body_fn = std::function<void(background_loop&)>;

    /// `name` names the thread (ps, gdb, perf; the first 15 characters, Linux's limit).
    background_loop(std::string name, body_fn body);
    /// Stops and joins (the owner's destructor should call stop() first if the body uses the
    /// owner's members: the owner's members are destroyed before this one).
    ~background_loop();
    background_loop(const background_loop&) = delete;
    background_loop& operator=(const background_loop&) = delete;

    /// Starts the thread; a second call while running does nothing.
    void start();
    /// Asks the body to finish, wakes it and joins. Idempotent; safe before start().
    void stop() noexcept;
    /// Ends the current (or the next) wait early. Cheap; safe from any thread.
    void wake() noexcept;
    bool stopping() const noexcept;
    bool running() const noexcept { return thread_.joinable(); }
    const std::string& name() const noexcept { return name_; }

    /// Body only: waits up to `d`, returning early on wake() or stop(). Returns false once
    /// stopping (the body should then finish its pass and return), true otherwise.
    bool wait_for(std::chrono::steady_clock::duration d);
    /// Body only: as wait_for, up to a point in time.
    bool wait_until(std::chrono::steady_clock::time_point deadline);

private:
    std::string name_;
    body_fn body_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    bool woken_ = false;
    std::thread thread_;
};

/// Records the thread that constructed it (the broker thread, for the plugin: mosquitto runs
/// plugin_init and every callback on its main loop thread) so that functions that must run
/// there can check it cheaply. In debug builds a call from another thread aborts with a
/// message naming the function; in release builds assert_on_thread() costs nothing.
class broker_thread_guard {
public:
    broker_thread_guard() noexcept : id_(std::this_thread::get_id()) {}
    bool on_thread() const noexcept { return std::this_thread::get_id() == id_; }
    void assert_on_thread([[maybe_unused]] const char* function) const noexcept {
#ifndef NDEBUG
        if (!on_thread()) fail(function);
#endif
    }

private:
    [[noreturn]] static void fail(const char* function) noexcept;
    std::thread::id id_;
};

}  // namespace devicegate
