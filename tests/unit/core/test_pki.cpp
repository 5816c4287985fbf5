#include "devicegate/pki.hpp"
#include "devicegate/serial_spelling.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <openssl/bn.h>

using namespace devicegate;
using namespace devicegate::test;

TEST_CASE("pki: certificates from PEM and DER") {
    std::string pem = read_file(pki("tenant-a-chain.crt"), max_certificate_file_bytes);
    CHECK(parse_certificates(pem, "chain").size() == 3);

    auto one = load_cert(pki("root.crt"));
    unsigned char* der = nullptr;
    int len = i2d_X509(one.get(), &der);
    REQUIRE(len > 0);
    std::string der_bytes(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    auto parsed = parse_certificates(der_bytes, "der");
    REQUIRE(parsed.size() == 1);
    CHECK(X509_cmp(parsed[0].get(), one.get()) == 0);

    SECTION("truncated DER") {
        CHECK_THROWS_WITH(parse_certificates(der_bytes.substr(0, der_bytes.size() / 2), "t.der"),
                          Catch::Contains("t.der: neither PEM nor valid DER certificate"));
    }
    SECTION("trailing bytes after DER") {
        CHECK_THROWS_WITH(parse_certificates(der_bytes + "xyz", "t.der"), Catch::Contains("3 trailing bytes"));
    }
    SECTION("truncated PEM") {
        CHECK_THROWS_WITH(parse_certificates(pem.substr(0, pem.size() - 100), "t.pem"),
                          Catch::Contains("t.pem: malformed PEM certificate"));
    }
    SECTION("corrupt base64 inside PEM") {
        std::string bad = pem;
        bad[100] = '!';
        CHECK_THROWS_AS(parse_certificates(bad, "bad.pem"), pki_error);
    }
    SECTION("garbage and empty input") {
        CHECK_THROWS_AS(parse_certificates("hello world", "g"), pki_error);
        CHECK_THROWS_WITH(parse_certificates("", "e"), Catch::Contains("e: empty input"));
        CHECK_THROWS_WITH(parse_certificates("-----BEGIN NOTHING-----\n", "n"), Catch::Contains("n: "));
    }
}

TEST_CASE("pki: CRLs from PEM and DER") {
    CHECK(parse_crls(read_file(pki("subca-a.crl.pem"), max_crl_file_bytes), "p").size() == 1);
    CHECK(parse_crls(read_file(pki("subca-a-revokes-dev-002.crl.der"), max_crl_file_bytes), "d").size() == 1);
    CHECK_THROWS_AS(parse_crls(read_file(pki("root.crt"), max_crl_file_bytes), "cert-not-crl"), pki_error);
    CHECK_THROWS_AS(parse_crls(std::string(1000, '\x30'), "zeros"), pki_error);
}

TEST_CASE("pki: read_file refuses missing, empty, oversized and non-regular files") {
    temp_dir dir;
    CHECK_THROWS_WITH(read_file(dir.file("missing"), 10), Catch::Contains("missing: cannot stat"));
    write_file(dir.file("empty"), "");
    CHECK_THROWS_WITH(read_file(dir.file("empty"), 10), Catch::Contains("file is empty"));
    {
        // A sparse "huge" file: the size check must refuse it before reading anything.
        std::ofstream f(dir.file("huge"));
        f.close();
        std::filesystem::resize_file(dir.file("huge"), max_crl_file_bytes + 1);
    }
    CHECK_THROWS_WITH(read_file(dir.file("huge"), max_crl_file_bytes), Catch::Contains("more than the limit"));
    CHECK_THROWS_WITH(read_file(dir.path().string(), 10), Catch::Contains("not a regular file"));
    write_file(dir.file("ok"), "abc");
    CHECK(read_file(dir.file("ok"), 10) == "abc");
}

TEST_CASE("pki: serial keys") {
    auto make = [](const char* hex) {
        BIGNUM* bn = nullptr;
        BN_hex2bn(&bn, hex);
        ASN1_INTEGER* i = BN_to_ASN1_INTEGER(bn, nullptr);
        BN_free(bn);
        auto key = make_serial_key(i);
        auto text = serial_hex(i);
        ASN1_INTEGER_free(i);
        return std::make_pair(key, text);
    };
    auto [a, a_hex] = make("0102");
    auto [b, b_hex] = make("0103");
    auto [c, c_hex] = make("01");
    CHECK(a_hex == "0102");
    CHECK(a < b);
    CHECK(c < a);  // shorter magnitudes order first
    CHECK(make("0102").first == a);
    auto [long1, long1_hex] = make("0102030405060708090A0B0C0D0E0F101112131415");  // 21 octets
    auto [long2, long2_hex] = make("0102030405060708090A0B0C0D0E0F101112131416");
    CHECK(long1.bytes[0] == 0xFF);
    CHECK(long1 != long2);
    CHECK(long1_hex == "0102030405060708090A0B0C0D0E0F101112131415");

    // The spelling keeps text only for a serial its key cannot give back, and copies own it.
    CHECK(serial_spelling(a, a_hex).hex(a) == "0102");
    auto odd = std::make_unique<serial_spelling>(long1, long1_hex);
    serial_spelling copied(*odd);
    serial_spelling assigned;
    assigned = *odd;
    odd.reset();
    CHECK(copied.hex(long1) == long1_hex);
    CHECK(assigned.hex(long1) == long1_hex);
    serial_spelling moved(std::move(copied));
    CHECK(moved.hex(long1) == long1_hex);
    assigned = serial_spelling(a, a_hex);
    CHECK(assigned.hex(a) == "0102");
}

TEST_CASE("pki: CRL Distribution Point URLs") {
    CHECK(crl_distribution_point_urls(load_cert(device_cert("dev-001")).get()).empty());
    CHECK(crl_distribution_point_urls(load_cert(device_cert("dev-cdp")).get()) ==
          std::vector<std::string>{"http://127.0.0.1:9/subca-a.crl"});
}

TEST_CASE("pki: certificate_sha256 is the fingerprint openssl x509 prints") {
    for (const char* name : {"root.crt", "subca-a.crt", "devices/dev-001.crt"}) {
        auto cert = load_cert(pki(name));
        FILE* p = popen(("openssl x509 -noout -fingerprint -sha256 -in '" + pki(name) + "'").c_str(), "r");
        REQUIRE(p != nullptr);
        char line[256] = {};
        const bool read = fgets(line, sizeof line, p) != nullptr;
        pclose(p);
        REQUIRE(read);
        const char* equals = std::strchr(line, '=');  // "sha256 Fingerprint=AB:CD:..." -> "abcd..."
        REQUIRE(equals != nullptr);
        std::string expected;
        for (const char* c = equals + 1; *c != '\0' && *c != '\n'; ++c) {
            if (*c != ':') expected += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
        }
        CHECK(fingerprint_hex(certificate_sha256(cert.get())) == expected);
    }
}
