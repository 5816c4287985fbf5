#include "devicegate/job.hpp"
#include "devicegate/redis.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace devicegate;

namespace {
device_certificate sample() {
    device_certificate c;
    c.device_id = "dev-001";
    c.serial_hex = "0A7A";
    c.fingerprint_sha256 = "ab12";
    c.certificate_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    c.first_seen = 1795800000;
    c.broker_id = "broker-1";
    return c;
}
}  // namespace

TEST_CASE("jobs: the JSON schema") {
    auto j = nlohmann::json::parse(encode_job(sample(), job_type::first_connect));
    CHECK(j["schema"] == 1);
    CHECK(j["type"] == "first_connect");
    CHECK(j["device_id"] == "dev-001");
    CHECK(j["serial"] == "0A7A");
    CHECK(j["fingerprint_sha256"] == "ab12");
    CHECK(j["certificate_pem"] == sample().certificate_pem);
    CHECK(j["first_seen"] == 1795800000);
    CHECK(j["broker_id"] == "broker-1");
    CHECK(nlohmann::json::parse(encode_job(sample(), job_type::certificate_changed))["type"] == "certificate_changed");
}

TEST_CASE("jobs: journal lines round-trip, bad lines are refused with a reason") {
    auto back = parse_journal_line(encode_journal_line(sample()));
    CHECK(back.device_id == "dev-001");
    CHECK(back.certificate_pem == sample().certificate_pem);
    CHECK(back.first_seen == 1795800000);
    CHECK_THROWS_WITH(parse_journal_line("{not json"), Catch::Contains("not JSON"));
    CHECK_THROWS_WITH(parse_journal_line("[1,2]"), Catch::Contains("not a JSON object"));
    CHECK_THROWS_WITH(parse_journal_line(R"({"device_id":"dev/1"})"), Catch::Contains("safe device id"));
    auto line = nlohmann::json::parse(encode_journal_line(sample()));
    line["first_seen"] = "yesterday";
    CHECK_THROWS_WITH(parse_journal_line(line.dump()), Catch::Contains("first_seen"));
}

TEST_CASE("redis URLs") {
    auto o = redis_options::parse_url("redis://:s3cret@redis.internal:6380/2");
    CHECK(o.host == "redis.internal");
    CHECK(o.port == 6380);
    CHECK(o.db == 2);
    CHECK(o.password == "s3cret");
    CHECK(o.describe() == "redis.internal:6380/2");  // never the password
    auto d = redis_options::parse_url("redis://localhost");
    CHECK(d.port == 6379);
    CHECK(d.password.empty());
    CHECK(redis_options::parse_url("redis://user:pw@h:1").password == "pw");
    for (const char* bad : {"http://h", "redis://", "redis://h:0", "redis://h:99999", "redis://h:12x", "redis://h/x"}) {
        INFO(bad);
        CHECK_THROWS_AS(redis_options::parse_url(bad), std::invalid_argument);
    }
    try {
        redis_options::parse_url("redis://:topsecret@h:bad");
        FAIL("no error");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("topsecret") == std::string::npos);
    }
}
