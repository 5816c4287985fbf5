#include "devicegate/background_loop.hpp"

#include "eventually.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace devicegate;
using devicegate::test::eventually;
using namespace std::chrono_literals;

TEST_CASE("background_loop: wake() ends a long wait at once; stop() ends the body and joins") {
    std::atomic<int> passes{0};
    std::atomic<bool> returned{false};
    background_loop loop("test-loop", [&](background_loop& l) {
        while (l.wait_for(1h)) ++passes;
        returned = true;
    });
    loop.start();
    CHECK(loop.running());
    loop.wake();
    REQUIRE(eventually([&] { return passes == 1; }));
    loop.wake();
    REQUIRE(eventually([&] { return passes == 2; }));
    const auto before = std::chrono::steady_clock::now();
    loop.stop();
    CHECK(std::chrono::steady_clock::now() - before < 5s);  // not the hour of the wait
    CHECK(returned);
    CHECK(passes == 2);
    CHECK(loop.stopping());
    CHECK_FALSE(loop.running());
    loop.stop();  // idempotent
}

TEST_CASE("background_loop: a wake-up that arrives while the body is busy is not lost") {
    std::atomic<int> passes{0};
    std::atomic<bool> busy{false}, release{false};
    background_loop loop("test-sticky", [&](background_loop& l) {
        while (l.wait_for(1h)) {
            busy = true;
            while (!release) std::this_thread::yield();
            busy = false;
            ++passes;
        }
    });
    loop.wake();  // before the thread even runs
    loop.start();
    REQUIRE(eventually([&] { return busy.load(); }));
    loop.wake();  // while the body works: the next wait must return at once
    release = true;
    CHECK(eventually([&] { return passes == 2; }));
    loop.stop();
}

TEST_CASE("background_loop: stop() before start() and waits after stop()") {
    std::atomic<bool> ran{false};
    background_loop never("test-never", [&](background_loop&) { ran = true; });
    never.stop();
    CHECK_FALSE(never.running());
    CHECK_FALSE(ran);

    std::atomic<int> results{-1};
    background_loop loop("test-after-stop", [&](background_loop& l) {
        while (l.wait_for(1ms)) {
        }
        results = l.wait_for(1h) ? 1 : 0;  // stopping: returns false at once
    });
    loop.start();
    loop.stop();
    CHECK(results == 0);
}

TEST_CASE("broker_thread_guard: knows the thread that constructed it") {
    broker_thread_guard guard;
    CHECK(guard.on_thread());
    guard.assert_on_thread("test");  // does not abort on the right thread
    bool elsewhere = true;
    std::thread([&] { elsewhere = guard.on_thread(); }).join();
    CHECK_FALSE(elsewhere);
}
