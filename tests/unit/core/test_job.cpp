#include "devicegate/job.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/redis.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <openssl/pem.h>

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

TEST_CASE("jobs: written by hand, read by any JSON parser; the type comes first", "[job]") {
    auto c = sample();
    c.broker_id = "b\"1\\\t\x01";  // quotes, backslash, tab and a control character need escapes
    const std::string first = encode_job(c, job_type::first_connect);
    CHECK(first.rfind(R"({"type":"first_connect",)", 0) == 0);  // the first-connect script relies on it
    CHECK(encode_job(c, job_type::certificate_changed).rfind(R"({"type":"certificate_changed",)", 0) == 0);
    const auto j = nlohmann::json::parse(first);
    CHECK(j["broker_id"] == c.broker_id);
    CHECK(j["certificate_pem"] == c.certificate_pem);
    CHECK(j.size() == 8);
    // Non-ASCII text goes through nlohmann: valid UTF-8 is kept, invalid refused as before.
    c.broker_id = "br\xc3\xbc" "cke";
    CHECK(nlohmann::json::parse(encode_job(c, job_type::first_connect))["broker_id"] == c.broker_id);
    c.broker_id = "bad\xff";
    CHECK_THROWS(encode_job(c, job_type::first_connect));
    CHECK(nlohmann::json::parse(encode_journal_line(sample())) ==
          nlohmann::json{{"device_id", "dev-001"}, {"serial", "0A7A"}, {"fingerprint_sha256", "ab12"},
                         {"certificate_pem", sample().certificate_pem}, {"first_seen", 1795800000},
                         {"broker_id", "broker-1"}});
}

TEST_CASE("jobs: the PEM written from the DER is PEM_write_bio_X509's", "[job]") {
    for (const char* file : {"dev-001", "dev-001-renewed"}) {
        INFO(file);
        const std::string pem = read_file(test::device_cert(file), max_certificate_file_bytes);
        auto cert = test::load_cert(test::device_cert(file));
        bio_ptr bio(BIO_new(BIO_s_mem()));
        REQUIRE(PEM_write_bio_X509(bio.get(), cert.get()) == 1);
        char* data = nullptr;
        const long len = BIO_get_mem_data(bio.get(), &data);
        const std::string expected(data, static_cast<std::size_t>(len));
        unsigned char* der = nullptr;
        const int der_len = i2d_X509(cert.get(), &der);
        REQUIRE(der_len > 0);
        const std::string der_text(reinterpret_cast<const char*>(der), static_cast<std::size_t>(der_len));
        OPENSSL_free(der);
        CHECK(pem_from_der(der_text) == expected);
    }
    // Lengths around the 48-byte line boundary.
    for (std::size_t n : {0u, 1u, 47u, 48u, 49u, 96u}) {
        const std::string pem = pem_from_der(std::string(n, 'x'));
        CHECK(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
        CHECK(pem.find("\n\n") == std::string::npos);
        CHECK(pem.size() == 28 + 26 + (n + 2) / 3 * 4 + (n + 47) / 48);
    }
}
