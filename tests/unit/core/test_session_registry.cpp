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
