#include "devicegate/device_id.hpp"

#include <catch2/catch.hpp>

#include <string>

using devicegate::is_safe_device_id;

TEST_CASE("device ids: the safe alphabet") {
    SECTION("typical ids are accepted") {
        CHECK(is_safe_device_id("device-001"));
        CHECK(is_safe_device_id("A4B72CCDFF33"));
        CHECK(is_safe_device_id("gw.site_7:rack-2@eu"));
        CHECK(is_safe_device_id(std::string(128, 'a')));
    }
    SECTION("MQTT wildcards, separators and control characters are refused") {
        for (const char* bad : {"dev+1", "dev#1", "dev/1", "dev 1", "dev\t1", "dev\n1", "dev\x7f", "dev$", "dev%c",
                                "dev\\1", "dev\"1", "dev*1"}) {
            INFO(bad);
            CHECK_FALSE(is_safe_device_id(bad));
        }
        CHECK_FALSE(is_safe_device_id(std::string("dev\0x", 5)));
    }
    SECTION("empty, too long, or not starting with a letter or digit") {
        CHECK_FALSE(is_safe_device_id(""));
        CHECK_FALSE(is_safe_device_id(std::string(129, 'a')));
        CHECK_FALSE(is_safe_device_id("-dev"));
        CHECK_FALSE(is_safe_device_id(".dev"));
        CHECK_FALSE(is_safe_device_id("$SYS"));
    }
    SECTION("non-ASCII is refused") { CHECK_FALSE(is_safe_device_id("g\xc3\xa9r\xc3\xa4t")); }
}
