// The typed reply readers against real replies from a real redis-server: each reader
// returns the shape it promises or throws redis_data_error naming the command and what came.
#include "devicegate/redis.hpp"
#include "redis_process.hpp"

#include <catch2/catch.hpp>

using namespace devicegate;

namespace {
std::string data_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const redis_data_error& e) {
        return e.what();
    }
    return "(no redis_data_error)";
}
}  // namespace

TEST_CASE("redis readers: scalars, nil and error replies", "[redis]") {
    test::redis_process server;
    redis_connection redis(server.options());
    redis.command({"SET", "s", "text"});
    redis.command({"HSET", "h", "a", "1", "b", "2"});

    CHECK(reply_string(redis.command({"GET", "s"}).get(), "GET s") == "text");
    CHECK(reply_string(redis.command({"PING"}).get(), "PING") == "PONG");  // a status reply
    CHECK(reply_integer(redis.command({"STRLEN", "s"}).get(), "STRLEN") == 4);
    CHECK(reply_optional_string(redis.command({"HGET", "h", "a"}).get(), "HGET") == "1");
    CHECK_FALSE(reply_optional_string(redis.command({"HGET", "h", "zz"}).get(), "HGET"));
    CHECK(is_nil(redis.command({"GET", "missing"}).get()));

    auto wrong_type = redis.command({"HGETALL", "s"});
    CHECK(is_error(wrong_type.get()));
    CHECK(is_error_code(wrong_type.get(), "WRONGTYPE"));
    CHECK_FALSE(is_error_code(wrong_type.get(), "NOSCRIPT"));
    CHECK_THAT(data_error_of([&] { reply_hash(wrong_type.get(), "HGETALL s"); }),
               Catch::StartsWith("HGETALL s: Redis error: WRONGTYPE"));
    CHECK_THAT(data_error_of([&] { expect_ok(wrong_type.get(), "HGETALL s"); }), Catch::Contains("WRONGTYPE"));
    CHECK_THAT(data_error_of([&] { reply_integer(redis.command({"GET", "s"}).get(), "GET s"); }),
               Catch::Equals("GET s: expected an integer, got string"));
    CHECK_THAT(data_error_of([&] { reply_string(redis.command({"GET", "missing"}).get(), "GET missing"); }),
               Catch::Equals("GET missing: expected a string, got nil"));
    CHECK_THAT(data_error_of([&] { reply_array(redis.command({"GET", "s"}).get(), "GET s"); }),
               Catch::Equals("GET s: expected an array, got string"));
    CHECK_NOTHROW(expect_ok(redis.command({"GET", "missing"}).get(), "GET"));
}

TEST_CASE("redis readers: arrays, hashes and stream entries", "[redis]") {
    test::redis_process server;
    redis_connection redis(server.options());
    redis.command({"HSET", "h", "a", "1", "b", "2"});
    CHECK(reply_hash(redis.command({"HGETALL", "h"}).get(), "h") == std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}});
    CHECK(reply_hash(redis.command({"HGETALL", "none"}).get(), "none").empty());
    auto keys = reply_strings(redis.command({"HKEYS", "h"}).get(), "HKEYS h");
    std::sort(keys.begin(), keys.end());
    CHECK(keys == std::vector<std::string>{"a", "b"});
    CHECK(reply_array(redis.command({"HKEYS", "h"}).get(), "HKEYS", 2).size() == 2);
    CHECK_THAT(data_error_of([&] { reply_array(redis.command({"HKEYS", "h"}).get(), "HKEYS", 3); }),
               Catch::Equals("HKEYS: expected 3 elements, got 2"));
    // A list of integers is not a list of strings.
    CHECK_THAT(data_error_of([&] { reply_strings(redis.command({"SMISMEMBER", "nope", "a"}).get(), "SMISMEMBER"); }),
               Catch::Contains("expected a string, got integer"));

    const std::string id1 = reply_string(redis.command({"XADD", "st", "*", "type", "first_connect", "job", "{}"}).get(), "XADD");
    const std::string id2 = reply_string(redis.command({"XADD", "st", "*", "k", "v"}).get(), "XADD");
    auto entries = reply_stream_entries(redis.command({"XRANGE", "st", "-", "+"}).get(), "st");
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].id == id1);
    CHECK(entries[0].fields == std::map<std::string, std::string>{{"job", "{}"}, {"type", "first_connect"}});
    CHECK(entries[1].id == id2);
    CHECK_THAT(data_error_of([&] { reply_stream_entries(redis.command({"HGETALL", "h"}).get(), "h"); }),
               Catch::Equals("h: expected an array, got string"));

    // XAUTOCLAIM of an entry deleted after delivery: Redis 7 leaves it out and reports its id.
    redis.command({"XGROUP", "CREATE", "st", "g", "0"});
    redis.command({"XREADGROUP", "GROUP", "g", "c1", "STREAMS", "st", ">"});
    redis.command({"XDEL", "st", id1});
    auto claimed = redis.command({"XAUTOCLAIM", "st", "g", "c2", "0", "0-0"});
    auto parts = reply_array(claimed.get(), "XAUTOCLAIM");
    REQUIRE(parts.size() >= 2);
    auto live = reply_stream_entries(parts[1], "XAUTOCLAIM");
    REQUIRE(live.size() == 1);
    CHECK(live[0].id == id2);
}

TEST_CASE("redis: transactions and pub/sub messages", "[redis]") {
    test::redis_process server;
    redis_connection redis(server.options());
    auto exec = redis.transaction({{"SET", "a", "1"}, {"INCR", "a"}});
    CHECK(reply_array(exec.get(), "EXEC", 2).size() == 2);
    CHECK(reply_string(redis.command({"GET", "a"}).get(), "GET") == "2");
    // A command that fails inside EXEC names itself.
    redis.command({"SET", "s", "text"});
    CHECK_THAT(data_error_of([&] { redis.transaction({{"SET", "b", "1"}, {"INCR", "s"}}); }),
               Catch::StartsWith("INCR: Redis error:"));
    // A command Redis refuses while queueing aborts the whole transaction.
    CHECK_THAT(data_error_of([&] { redis.transaction({{"SET", "c", "1"}, {"NOSUCHCOMMAND"}}); }), Catch::Contains("EXEC"));
    CHECK(is_nil(redis.command({"GET", "c"}).get()));

    redis_connection sub(server.options());
    sub.append({"SUBSCRIBE", "ch"});
    auto confirmation = sub.next_reply(std::chrono::milliseconds(1000));
    REQUIRE(confirmation);
    CHECK_FALSE(reply_pubsub_message(confirmation->get()));  // ["subscribe", "ch", 1]
    CHECK(reply_integer(redis.command({"PUBLISH", "ch", "hello"}).get(), "PUBLISH") == 1);
    auto message = sub.next_reply(std::chrono::milliseconds(1000));
    REQUIRE(message);
    auto m = reply_pubsub_message(message->get());
    REQUIRE(m);
    CHECK(m->channel == "ch");
    CHECK(m->payload == "hello");
    CHECK_FALSE(sub.next_reply(std::chrono::milliseconds(20)));
}
