#include "bridge_config.hpp"
#include "wireguard.hpp"

#include <catch2/catch.hpp>

using namespace devicegate::bridge;

TEST_CASE("wireguard: pools and their addresses", "[bridge][wireguard]") {
    auto p = parse_pool("10.80.0.0/16");
    CHECK(p.capacity() == 65533);
    CHECK(p.address(1) == "10.80.0.2");
    CHECK(p.address(254) == "10.80.0.255");
    CHECK(p.address(65533) == "10.80.255.254");
    CHECK(parse_pool("192.168.7.0/30").capacity() == 1);
    CHECK_THROWS(parse_pool("10.80.0.1/16"));  // host bits
    CHECK_THROWS(parse_pool("10.80.0.0"));
    CHECK_THROWS(parse_pool("10.80.0.0/31"));
    CHECK_THROWS(parse_pool("10.80.0.0/16x"));
    CHECK_THROWS(parse_pool("fd00::/64"));
}

TEST_CASE("wireguard: generated pairs, and the public key of a private key as wg pubkey computes it", "[bridge][wireguard]") {
    auto pair = generate_wireguard_keypair();
    CHECK(is_wireguard_key(pair.private_key));
    CHECK(is_wireguard_key(pair.public_key));
    CHECK(wireguard_public_key(pair.private_key) == pair.public_key);
    CHECK(generate_wireguard_keypair().public_key != pair.public_key);
    // RFC 7748 section 6.1, Alice's keys, base64.
    CHECK(wireguard_public_key("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=") ==
          "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=");
    CHECK_FALSE(is_wireguard_key(""));
    CHECK_FALSE(is_wireguard_key("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTm="));
    CHECK_FALSE(is_wireguard_key("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo"));
    CHECK_FALSE(is_wireguard_key("!SDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="));
}

TEST_CASE("wireguard: the device config", "[bridge][wireguard]") {
    wireguard_settings s;
    s.gateway_public_key = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    s.endpoint = "gw.example.com:51820";
    s.allowed_ips = "10.80.0.0/16";
    s.dns = "10.80.0.1";
    const std::string generated = device_config(s, "10.80.0.2", "PRIV");
    CHECK(generated ==
          "[Interface]\nPrivateKey = PRIV\nAddress = 10.80.0.2/32\nDNS = 10.80.0.1\n\n[Peer]\n"
          "PublicKey = hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\nEndpoint = gw.example.com:51820\n"
          "AllowedIPs = 10.80.0.0/16\nPersistentKeepalive = 25\n");
    CHECK_THAT(device_config(s, "10.80.0.2", ""), !Catch::Contains("\nPrivateKey") && Catch::Contains("# PrivateKey:"));
}
