// Topic restrictions through the real broker.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::itest;

namespace {
constexpr int not_authorized = 135;
}

TEST_CASE("a device is restricted to its own topics", "[integration]") {
    broker b;
    REQUIRE(b.start());
    auto dev1 = device("dev-001");
    auto dev3 = device("dev-003");
    REQUIRE(dev1->connect(b.port()) == 0);
    REQUIRE(dev3->connect(b.port()) == 0);

    SECTION("its own subtree works both ways, ThingsBoard's device API for publishing") {
        CHECK(dev1->subscribe("devices/dev-001/cmd/#") == 1);
        CHECK(accepted(dev1->publish("devices/dev-001/cmd/reboot", "now")));
        CHECK(dev1->wait_message("devices/dev-001/cmd/reboot") == std::optional<std::string>("now"));
        CHECK(accepted(dev1->publish("v1/devices/me/telemetry", R"({"t":1})")));
    }
    SECTION("publishing into another device's subtree is denied and logged") {
        REQUIRE(dev3->subscribe("devices/dev-003/#") == 1);
        CHECK(dev1->publish("devices/dev-003/cmd", "evil") == not_authorized);
        CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=acl_denied access=publish topic=\"devices/dev-003/cmd\""));
        CHECK_FALSE(dev3->wait_message("devices/dev-003/cmd", 500ms));
    }
    SECTION("subscribing outside its topics is denied and logged") {
        CHECK(dev1->subscribe("devices/+/cmd") == not_authorized);
        CHECK(dev1->subscribe("#") == not_authorized);
        CHECK(dev1->subscribe("v1/devices/me/telemetry") == not_authorized);
        CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=acl_denied access=subscribe topic=\"devices/+/cmd\""));
    }
}
