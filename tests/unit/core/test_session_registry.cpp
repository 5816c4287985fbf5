#include "devicegate/session_registry.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace devicegate;

namespace {
serial_key key(unsigned char b) {
    serial_key k;
    k.bytes[0] = 1;
    k.bytes[1] = b;
    return k;
}
}  // namespace

TEST_CASE("session registry") {
    session_registry r;
    int a = 0, b = 0;
    r.admit(&a, "dev-1", key(1));
    r.admit(&b, "dev-2", key(2));
    REQUIRE(r.size() == 2);

    SECTION("finds sessions by serial, in either lookup strategy") {
        CHECK(r.ids_holding({key(2)}) == std::vector<std::string>{"dev-2"});
        CHECK(r.ids_holding({key(3)}).empty());
        auto many = r.ids_holding({key(0), key(1), key(3), key(4), key(5)});  // more serials than sessions
        CHECK(many == std::vector<std::string>{"dev-1"});
    }
    SECTION("device_of checks the client handle") {
        REQUIRE(r.device_of(&a, "dev-1") != nullptr);
        CHECK(*r.device_of(&a, "dev-1") == "dev-1");
        CHECK(r.device_of(&b, "dev-1") == nullptr);
        CHECK(r.device_of(&a, "dev-9") == nullptr);
    }
    SECTION("takeover: the old connection's late disconnect does not remove the new session") {
        int a2 = 0;
        r.admit(&a2, "dev-1", key(7));  // renewed certificate, new connection
        r.remove(&a, "dev-1");          // the old connection goes away afterwards
        REQUIRE(r.device_of(&a2, "dev-1") != nullptr);
        CHECK(r.ids_holding({key(1)}).empty());
        CHECK(r.ids_holding({key(7)}) == std::vector<std::string>{"dev-1"});
    }
    SECTION("remove") {
        r.remove(&a, "dev-1");
        CHECK(r.size() == 1);
        CHECK(r.ids_holding({key(1)}).empty());
        CHECK(r.all_ids() == std::vector<std::string>{"dev-2"});
    }
}

TEST_CASE("session registry: offline records outlive the connection, are never kicked, and are swept") {
    using namespace std::chrono_literals;
    session_registry r;
    int a = 0, b = 0, c = 0;
    const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
    r.admit(&a, "dev-1", key(1));
    r.admit(&b, "dev-2", key(2));
    r.admit(&c, "dev-3", key(3));
    CHECK(r.disconnected(&a, "dev-1", true, t0));    // may persist: kept
    CHECK(r.disconnected(&b, "dev-2", false, t0));   // clean session: until the next sweep
    CHECK_FALSE(r.disconnected(&a, "dev-3", true, t0));  // not this client's record
    CHECK_FALSE(r.disconnected(&a, "dev-1", true, t0));  // already offline
    CHECK(r.offline() == 2);
    CHECK(r.find(&a, "dev-1") != nullptr);
    CHECK(r.find(&b, "dev-2") != nullptr);  // the will is checked after the disconnect event
    // Offline sessions are never kicked (mosquitto 2.0.11 double-expiry path).
    CHECK(r.ids_holding({key(1), key(2), key(3)}) == std::vector<std::string>{"dev-3"});
    CHECK(r.all_ids() == std::vector<std::string>{"dev-3"});
    CHECK_FALSE(r.contains("dev-1"));
    r.request_kick("dev-1");
    CHECK(r.take_pending_kicks().empty());

    CHECK(r.sweep_disconnected() == 1);
    CHECK(r.find(&b, "dev-2") == nullptr);
    CHECK(r.find(&a, "dev-1") != nullptr);
    CHECK(r.sweep_offline(t0 + 10s, 20s, 10).empty());
    CHECK(r.sweep_offline(t0 + 30s, 20s, 10) == std::vector<std::string>{"dev-1"});
    CHECK(r.size() == 1);

    SECTION("a reconnect takes the offline record over; the stale sweep entry is ignored") {
        int a2 = 0;
        r.admit(&a, "dev-4", key(4));
        r.disconnected(&a, "dev-4", true, t0);
        r.admit(&a2, "dev-4", key(4));
        CHECK(r.offline() == 0);
        CHECK(r.sweep_offline(t0 + 1h, 20s, 10).empty());
        CHECK(r.contains("dev-4"));
    }
    SECTION("beyond max_offline the oldest goes first") {
        r.admit(&a, "dev-5", key(5));
        r.admit(&b, "dev-6", key(6));
        r.disconnected(&a, "dev-5", true, t0);
        r.disconnected(&b, "dev-6", true, t0 + 1s);
        CHECK(r.sweep_offline(t0 + 2s, 1h, 1) == std::vector<std::string>{"dev-5"});
        CHECK(r.offline() == 1);
    }
}

TEST_CASE("session registry: a record holds what it needs, the serial's hex is derived from its key") {
    // The hex spelling is not stored for a conforming serial: one heap string less per device.
    serial_key k;
    k.bytes[0] = 2;
    k.bytes[1] = 0x0A;
    k.bytes[2] = 0x7A;
    CHECK(serial_hex_of(k) == "0A7A");
    CHECK(serial_hex_of(serial_key{}) == "00");
    serial_key digest;
    digest.bytes[0] = 0xFF;  // make_serial_key's marker for a serial longer than 20 octets
    CHECK(serial_hex_of(digest).empty());

    session_registry r;
    int a = 0, b = 0, c = 0;
    r.admit(&a, "dev-1", k, {}, "0A7A");
    r.admit(&b, "dev-2", digest, {}, "0102030405060708090A0B0C0D0E0F101112131415");  // kept: not derivable
    r.admit(&c, "dev-3", key(3));                                                      // the default "-" is kept
    CHECK(r.find("dev-1")->serial_hex() == "0A7A");
    CHECK(r.find("dev-2")->serial_hex() == "0102030405060708090A0B0C0D0E0F101112131415");
    CHECK(r.find("dev-3")->serial_hex() == "-");
    // The deny window is made on the first denial only.
    CHECK(r.find("dev-1")->deny_state == nullptr);
    CHECK(r.find("dev-1")->suppressed_denies() == 0);
    r.find("dev-1")->denies().suppressed = 2;
    CHECK(r.find("dev-1")->suppressed_denies() == 2);
    CHECK(sizeof(session_record) <= 128);
}

TEST_CASE("session registry: revoked serials are found by scanning the online sessions") {
    session_registry r;
    int clients[50] = {};
    for (int i = 0; i < 50; ++i) r.admit(&clients[i], "dev-" + std::to_string(i), key(static_cast<unsigned char>(i)));
    r.disconnected(&clients[7], "dev-7", true, std::chrono::steady_clock::now());  // offline: never kicked
    auto ids = r.ids_holding({key(3), key(7), key(42), key(200)});
    std::sort(ids.begin(), ids.end());
    CHECK(ids == std::vector<std::string>{"dev-3", "dev-42"});
    CHECK(r.ids_holding({}).empty());
}
