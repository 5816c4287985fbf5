#include "devicegate/config.hpp"
#include "devicegate/duration.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;
using namespace std::chrono_literals;

TEST_CASE("values: on/off accepts DeviceGate's and mosquitto's spellings, nothing else") {
    for (const char* yes : {"on", "true", "1"}) CHECK(parse_on_off(yes));
    for (const char* no : {"off", "false", "0"}) CHECK_FALSE(parse_on_off(no));
    for (const char* bad : {"yes", "no", "ON", "True", "", " on", "2"}) {
        CHECK_THROWS_AS(parse_on_off(bad), value_error);
        CHECK_THROWS_WITH(parse_on_off(bad), "is not on or off");
    }
    // The plugin options use the same parser as the worker's configuration.
    option_list o{{"tenant_ca_file", "/a"}, {"ica_file", "/b"}, {"root_ca_file", "/c"}, {"crl_file", "/d"},
                  {"first_connect_jobs", "false"}, {"ocsp_nonce", "0"}, {"crl_distribution_points", "true"}};
    auto c = parse_plugin_config(o);
    CHECK_FALSE(c.first_connect_jobs);
    CHECK_FALSE(c.ocsp_nonce);
    CHECK(c.crl_distribution_points);
}

TEST_CASE("values: unsigned integers are digits only, within their range") {
    CHECK(parse_uint("0", 0, 10) == 0);
    CHECK(parse_uint("10", 0, 10) == 10);
    CHECK(parse_uint("18446744073709551615", 0, UINT64_MAX) == UINT64_MAX);
    for (const char* bad : {"", "11", "-1", "+1", " 1", "1 ", "1e3", "0x10", "18446744073709551616"}) {
        CHECK_THROWS_WITH(parse_uint(bad, 0, 10), "is not an integer between 0 and 10");
    }
}

TEST_CASE("values: durations within a range, and URLs") {
    CHECK(parse_duration_in("1500ms", 1s, 2s) == 1500ms);
    CHECK_THROWS_WITH(parse_duration_in("3s", 1s, 2s), "is out of range; expected between 1000ms and 2000ms");
    CHECK_THROWS_WITH(parse_duration_in("soon", 1s, 2s), "is not a duration such as 500ms, 30s, 5m or 24h");
    CHECK_THROWS_AS(parse_duration("1.5s"), std::invalid_argument);
    CHECK_THROWS_AS(parse_duration("-1s"), std::invalid_argument);
    CHECK(parse_http_url("https://ca.example/crl") == "https://ca.example/crl");
    CHECK_THROWS_WITH(parse_http_url("ftp://ca.example/crl"), "is not an http:// or https:// URL");
}
