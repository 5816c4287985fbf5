#include "devicegate/session_registry.hpp"

#include <catch2/catch.hpp>

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
