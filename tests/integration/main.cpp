#define CATCH_CONFIG_MAIN
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include "harness.hpp"

#include <catch2/catch.hpp>

namespace {
// Prints the logs of the processes a failed test case started, then removes its files.
struct artifacts_listener : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;
    void testCaseEnded(const Catch::TestCaseStats& stats) override {
        devicegate::itest::end_of_test(stats.totals.assertions.failed > 0);
    }
};
}  // namespace

CATCH_REGISTER_LISTENER(artifacts_listener)
