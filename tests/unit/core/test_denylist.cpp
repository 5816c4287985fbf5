#include "devicegate/denylist.hpp"
#include "devicegate/redis_model.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;
using namespace devicegate::test;

TEST_CASE("deny-list: serial numbers are normalized as the plugin logs them") {
    CHECK(normalize_serial_hex("0a7a5e") == "0A7A5E");
    CHECK(normalize_serial_hex("0x0A:7A:5E") == "0A7A5E");
    CHECK(normalize_serial_hex("A7A5E") == "0A7A5E");
    CHECK(normalize_serial_hex("00008A") == "8A");
    CHECK(normalize_serial_hex("00") == "00");
    CHECK_FALSE(normalize_serial_hex(""));
    CHECK_FALSE(normalize_serial_hex("xyz"));
    CHECK_FALSE(normalize_serial_hex("12 34"));
    CHECK_FALSE(normalize_serial_hex(std::string(200, 'A')));
    // A negative serial as the broker logs it (serial_hex): "-05".
    CHECK(normalize_serial_hex("-05") == "-05");
    CHECK(normalize_serial_hex("-0x00:0a") == "-0A");
    CHECK_FALSE(normalize_serial_hex("-00"));
    CHECK_FALSE(normalize_serial_hex("-"));
    CHECK_FALSE(normalize_serial_hex("--05"));
}

TEST_CASE("deny-list: a negative serial's spelling maps to its certificate's key") {
    BIGNUM* bn = nullptr;
    BN_hex2bn(&bn, "-05");
    ASN1_INTEGER* i = BN_to_ASN1_INTEGER(bn, nullptr);
    BN_free(bn);
    const std::string spelled = serial_hex(i);
    CHECK(spelled == "-05");
    CHECK(normalize_serial_hex(spelled) == spelled);  // what the deny-list holds is what the broker looks up
    CHECK(serial_key_from_hex(spelled) == make_serial_key(i));
    CHECK(serial_key_from_hex("05") != make_serial_key(i));
    ASN1_INTEGER_free(i);
}

TEST_CASE("deny-list: a hex serial maps to the same key as the certificate's serial") {
    for (const char* device : {"dev-001", "dev-002", "dev-revoked"}) {
        auto cert = load_cert(device_cert(device));
        auto key = serial_key_from_hex(serial_hex(X509_get0_serialNumber(cert.get())));
        REQUIRE(key);
        CHECK(*key == make_serial_key(X509_get0_serialNumber(cert.get())));
    }
}

TEST_CASE("deny-list: change messages") {
    auto c = parse_denylist_change(R"({"op":"revoke","kind":"serial","value":"0x0a7a"})");
    CHECK(c.revoke);
    CHECK(c.serial);
    CHECK(c.value == "0A7A");
    CHECK(parse_denylist_change(encode_denylist_change({false, false, "dev-1"})).value == "dev-1");
    for (const char* bad : {"", "[]", "{}", R"({"op":"revoke","kind":"device"})", R"({"op":"delete","kind":"device","value":"x"})",
                            R"({"op":"revoke","kind":"cert","value":"x"})", R"({"op":"revoke","kind":"serial","value":"zz"})",
                            R"({"op":"revoke","kind":"device","value":5})", "{\"op\":"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_denylist_change(bad), std::invalid_argument);
    }
}

TEST_CASE("deny-list: lookups and additions") {
    denylist a;
    a.devices.insert("dev-1");
    a.serials.insert("0A7A");
    CHECK(a.revokes("dev-1", "FFFF"));
    CHECK(a.revokes("dev-2", "0A7A"));
    CHECK_FALSE(a.revokes("dev-2", "FFFF"));
    denylist b = a;
    b.devices.insert("dev-3");
    b.serials.insert("0B");
    auto added = added_entries(&a, b);
    CHECK(added.devices == std::vector<std::string>{"dev-3"});
    REQUIRE(added.serials.size() == 1);
    CHECK(added.serials[0] == *serial_key_from_hex("0B"));
    CHECK(added_entries(&b, a).devices.empty());
    CHECK(added_entries(nullptr, a).devices.size() == 1);
}

TEST_CASE("deny-list: the local cache file") {
    temp_dir dir;
    denylist a;
    a.devices.insert("dev-1");
    a.serials.insert("0A7A");
    save_denylist_file(dir.file("cache.json"), a, 1234);
    std::int64_t synced = 0;
    auto b = load_denylist_file(dir.file("cache.json"), synced);
    CHECK(synced == 1234);
    CHECK(b.revokes("dev-1", ""));
    CHECK(b.revokes("", "0A7A"));
    write_file(dir.file("bad.json"), "{\"serials\": 5}");
    CHECK_THROWS_WITH(load_denylist_file(dir.file("bad.json"), synced), Catch::Contains("malformed deny-list cache"));
    CHECK_THROWS_WITH(load_denylist_file(dir.file("none.json"), synced), Catch::Contains("cannot open"));
}

TEST_CASE("redis model: keys under the prefix") {
    redis_model m{"tenant-a:"};
    CHECK(m.device("dev-1") == "tenant-a:device:dev-1");
    CHECK(m.jobs() == "tenant-a:jobs");
    CHECK(m.revoked_serials() == "tenant-a:revoked:serial");
    CHECK(m.revocations_channel() == "tenant-a:revocations");
}
