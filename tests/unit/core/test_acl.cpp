#include "devicegate/acl.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;

TEST_CASE("acl: default rules") {
    acl_policy acl(default_acl_rules());
    SECTION("a device publishes ThingsBoard telemetry and to its own subtree") {
        CHECK(acl.allows("dev-1", "v1/devices/me/telemetry", topic_access::write));
        CHECK(acl.allows("dev-1", "v1/devices/me/attributes", topic_access::write));
        CHECK(acl.allows("dev-1", "devices/dev-1/status", topic_access::write));
        CHECK(acl.allows("dev-1", "devices/dev-1", topic_access::write));
    }
    SECTION("the shared v1/devices/me topics cannot be read (they would leak other devices' traffic)") {
        CHECK_FALSE(acl.allows("dev-1", "v1/devices/me/telemetry", topic_access::read));
        CHECK_FALSE(acl.allows("dev-1", "v1/devices/me/#", topic_access::read));
    }
    SECTION("a device subscribes only inside its own subtree") {
        CHECK(acl.allows("dev-1", "devices/dev-1/#", topic_access::read));
        CHECK(acl.allows("dev-1", "devices/dev-1/+/cmd", topic_access::read));
        CHECK_FALSE(acl.allows("dev-1", "devices/+/cmd", topic_access::read));
        CHECK_FALSE(acl.allows("dev-1", "devices/#", topic_access::read));
        CHECK_FALSE(acl.allows("dev-1", "#", topic_access::read));
        CHECK_FALSE(acl.allows("dev-1", "+/dev-1/x", topic_access::read));
    }
    SECTION("other devices' topics are refused") {
        CHECK_FALSE(acl.allows("dev-1", "devices/dev-2/status", topic_access::write));
        CHECK_FALSE(acl.allows("dev-1", "devices/dev-10/status", topic_access::read));
        CHECK_FALSE(acl.allows("dev-10", "devices/dev-1/status", topic_access::read));
        CHECK_FALSE(acl.allows("dev-1", "v1/devices/other/telemetry", topic_access::write));
        CHECK_FALSE(acl.allows("dev-1", "", topic_access::write));
    }
}

TEST_CASE("acl: filter containment") {
    auto within = [](std::string_view filter, std::vector<std::string_view> pattern) {
        return filter_within(filter, pattern);
    };
    CHECK(within("a/b", {"a", "b"}));
    CHECK(within("a", {"a", "#"}));  // "a/#" matches its parent
    CHECK(within("a/b/c", {"a", "#"}));
    CHECK(within("a/+/c", {"a", "+", "c"}));
    CHECK(within("a/x/c", {"a", "+", "c"}));
    CHECK_FALSE(within("a/#", {"a", "+"}));
    CHECK_FALSE(within("a/b/c", {"a", "+"}));
    CHECK_FALSE(within("a", {"a", "+"}));
    CHECK_FALSE(within("a/+", {"a", "b"}));
    CHECK_FALSE(within("$SYS/x", {"+", "x"}));
    CHECK_FALSE(within("$SYS/x", {"#"}));
    CHECK(within("$SYS/x", {"$SYS", "#"}));
    CHECK(within("a//b", {"a", "", "b"}));
}

TEST_CASE("acl: custom rules") {
    acl_policy acl({parse_acl_rule("read devices/%c/in/+"), parse_acl_rule("write tele/%c-%c/up")});
    CHECK(acl.allows("d1", "devices/d1/in/x", topic_access::read));
    CHECK_FALSE(acl.allows("d1", "devices/d1/in/x", topic_access::write));
    CHECK(acl.allows("d1", "tele/d1-d1/up", topic_access::write));
    CHECK_FALSE(acl.allows("d1", "tele/d1-d2/up", topic_access::write));
    CHECK_THROWS_AS(parse_acl_rule("read"), std::invalid_argument);
    CHECK_THROWS_AS(parse_acl_rule("read a b"), std::invalid_argument);
    CHECK_THROWS_AS(acl_policy({{topic_access::read, ""}}), std::invalid_argument);
}

TEST_CASE("acl: rules for one device") {
    auto rules = default_acl_rules();
    rules.push_back(parse_client_acl_rule("monitor-1 read $SYS/broker/devicegate/#"));
    acl_policy acl(rules);
    CHECK(acl.allows("monitor-1", "$SYS/broker/devicegate/#", topic_access::read));
    CHECK_FALSE(acl.allows("dev-1", "$SYS/broker/devicegate/#", topic_access::read));
    CHECK_FALSE(acl.allows("monitor-1", "$SYS/broker/devicegate/admits", topic_access::write));
    CHECK(acl.allows("monitor-1", "devices/monitor-1/x", topic_access::write));
}
