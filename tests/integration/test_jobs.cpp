// First-connect jobs through the real broker and redis-server: exactly once, nothing lost.
#include "cert_factory.hpp"
#include "devicegate/redis.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>
#include <map>
#include <set>

using namespace devicegate::itest;

namespace {

std::vector<device_files> make_devices(const std::string& prefix, int count) {
    static devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    auto dir = test_dir();
    std::vector<device_files> out;
    for (int i = 0; i < count; ++i) {
        std::string id = prefix + std::to_string(i);
        factory.issue(dir, id);
        out.push_back({id, (dir / (id + ".crt")).string(), (dir / (id + ".key")).string()});
    }
    return out;
}

// Every job in the stream: device id -> types seen (in order).
std::map<std::string, std::vector<std::string>> jobs_in(const redis_server& redis) {
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    auto reply = c.command({"XRANGE", "devicegate:jobs", "-", "+"});
    std::map<std::string, std::vector<std::string>> out;
    for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* fields = reply->element[i]->element[1];
        for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (std::string(fields->element[f]->str) != "job") continue;
            auto job = nlohmann::json::parse(std::string(fields->element[f + 1]->str, fields->element[f + 1]->len));
            out[job["device_id"].get<std::string>()].push_back(job["type"].get<std::string>());
        }
    }
    return out;
}

// Scripts Redis has run (EVALSHA, and EVAL after a NOSCRIPT): one per certificate a broker
// handed to its job producer. When every handed certificate has had its script run, no job can
// still be on its way: a wait on this replaces a fixed "anything late would show up now" sleep.
long long scripts_run(const redis_server& redis) {
    std::string info;
    try {
        info = redis.command({"INFO", "commandstats"});
    } catch (const std::exception&) {
        return -1;
    }
    long long total = 0;
    for (const char* name : {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="}) {
        const auto at = info.find(name);
        if (at != std::string::npos) total += std::atoll(info.c_str() + at + std::strlen(name));
    }
    return total;
}

long long stream_length(const redis_server& redis) {
    try {
        return redis.integer({"XLEN", "devicegate:jobs"});
    } catch (const std::exception&) {
        return -1;
    }
}

}  // namespace

TEST_CASE("1,000 devices connecting concurrently, each twice and to two brokers, yield exactly 1,000 jobs",
          "[integration][redis][jobs]") {
    redis_server redis;
    REQUIRE(redis.start());
    broker a({.redis = &redis});
    broker b({.redis = &redis});
    REQUIRE(a.start());
    REQUIRE(b.start());
    auto devices = make_devices("storm-", 1000);
    // Each device twice on broker A and once on broker B, all at the same time.
    std::vector<device_files> wave_a = devices;
    wave_a.insert(wave_a.end(), devices.begin(), devices.end());
    std::thread to_b([&] { CHECK(connect_all(devices, b.port(), 16) == 1000); });
    CHECK(connect_all(wave_a, a.port(), 16) == 2000);
    to_b.join();

    REQUIRE(eventually([&] { return stream_length(redis) >= 1000; }, 20s));
    // Each broker hands each certificate to its producer once: 2,000 scripts, then nothing more.
    REQUIRE(eventually([&] { return scripts_run(redis) >= 2000; }, 20s));
    auto jobs = jobs_in(redis);
    CHECK(stream_length(redis) == 1000);
    CHECK(jobs.size() == 1000);
    for (const auto& [id, types] : jobs) {
        INFO(id);
        CHECK(types == std::vector<std::string>{"first_connect"});
    }
    // The device hash records what the first broker saw.
    CHECK(redis.command({"HGET", "devicegate:device:storm-7", "fingerprint"}).size() == 64);
}

TEST_CASE("a renewed certificate yields exactly one certificate-changed job", "[integration][redis][jobs]") {
    redis_server redis;
    REQUIRE(redis.start());
    broker b({.redis = &redis});
    REQUIRE(b.start());
    REQUIRE(device("dev-001")->connect(b.port()) == 0);
    for (int i = 0; i < 3; ++i) REQUIRE(device("dev-001-renewed", "dev-001")->connect(b.port()) == 0);
    REQUIRE(eventually([&] { return stream_length(redis) >= 2; }));
    REQUIRE(eventually([&] { return scripts_run(redis) >= 2; }));  // one per certificate, then nothing more
    auto jobs = jobs_in(redis);
    CHECK(jobs["dev-001"] == std::vector<std::string>{"first_connect", "certificate_changed"});

    // The job carries everything the worker needs.
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    auto reply = c.command({"XREVRANGE", "devicegate:jobs", "+", "-", "COUNT", "1"});
    const redisReply* fields = reply->element[0]->element[1];
    auto job = nlohmann::json::parse(std::string(fields->element[3]->str, fields->element[3]->len));
    CHECK(job["schema"] == 1);
    CHECK(job["type"] == "certificate_changed");
    CHECK(job["device_id"] == "dev-001");
    CHECK(job["fingerprint_sha256"].get<std::string>().size() == 64);
    CHECK_THAT(job["certificate_pem"].get<std::string>(), Catch::StartsWith("-----BEGIN CERTIFICATE-----"));
    CHECK(job["serial"].get<std::string>().size() >= 32);
    CHECK(job["first_seen"].get<long long>() > 1700000000);
    CHECK_FALSE(job["broker_id"].get<std::string>().empty());
}

TEST_CASE("Redis killed during a connect storm: no job lost, none duplicated", "[integration][redis][jobs]") {
    redis_server redis(/*durable=*/true);
    REQUIRE(redis.start());
    // A small memory bound so the storm also goes through the journal.
    broker b({.plugin_opts = {{"job_memory_limit", "20"}}, .redis = &redis});
    REQUIRE(b.start());
    REQUIRE(b.wait_for_log("redis link up"));
    auto devices = make_devices("kill-", 300);
    std::thread killer([&] {  // mid-storm: once some jobs are in
        eventually([&] { return stream_length(redis) >= 30; }, 20s);
        redis.kill();
    });
    CHECK(connect_all(devices, b.port(), 8) == 300);  // admitted throughout: known good devices
    killer.join();
    CHECK(b.wait_for_log("jobs link to redis down"));
    // The memory bound was passed: jobs went to the journal while Redis was down.
    CHECK(eventually([&] { return std::filesystem::exists(b.dir() / "devicegate-jobs.journal"); }));
    REQUIRE(redis.start());
    REQUIRE(eventually([&] { return stream_length(redis) >= 300; }, 20s));
    REQUIRE(eventually([&] { return !std::filesystem::exists(b.dir() / "devicegate-jobs.journal"); }, 20s));
    // Proving that no duplicate follows needs a bounded wait: the jobs still in memory are not
    // observable from here (the script run count restarted with Redis). A job goes from the
    // producer into the stream in milliseconds; 300 ms is ample.
    std::this_thread::sleep_for(300ms);
    auto jobs = jobs_in(redis);
    CHECK(stream_length(redis) == 300);
    CHECK(jobs.size() == 300);
}

TEST_CASE("the broker restarted while Redis is down: buffered jobs are journaled and delivered later",
          "[integration][redis][jobs]") {
    redis_server redis(/*durable=*/true);
    REQUIRE(redis.start());
    auto dir = test_dir();
    broker_options opts{.plugin_opts = {{"state_dir", dir.string()}}, .redis = &redis};
    broker b(opts);
    REQUIRE(b.start());
    REQUIRE(b.wait_for_log("redis link up"));
    redis.kill();
    REQUIRE(b.wait_for_log("jobs link to redis down"));
    auto devices = make_devices("restart-", 50);
    CHECK(connect_all(devices, b.port(), 8) == 50);
    b.stop();  // the plugin journals the 50 buffered jobs
    REQUIRE(std::filesystem::exists(dir / "devicegate-jobs.journal"));

    broker b2(opts);
    REQUIRE(b2.start());
    CHECK(b2.wait_for_log("holds 50 undelivered first-connect jobs"));
    REQUIRE(redis.start());
    REQUIRE(eventually([&] { return stream_length(redis) >= 50; }, 20s));
    CHECK(b2.wait_for_log("delivered 50 journaled first-connect jobs"));
    // The line is logged after the journal is removed and the 50 delivered: nothing is left.
    CHECK(stream_length(redis) == 50);
    CHECK(jobs_in(redis).size() == 50);
    CHECK_FALSE(std::filesystem::exists(dir / "devicegate-jobs.journal"));
}

TEST_CASE("a device key of the wrong type refuses that job with a log line; others go on", "[integration][redis][jobs]") {
    redis_server redis;
    REQUIRE(redis.start());
    broker b({.redis = &redis});
    REQUIRE(b.start());
    redis.command({"SET", "devicegate:device:dev-004", "garbage"});
    CHECK(device("dev-004")->connect(b.port()) == 0);
    CHECK(b.wait_for_log("first-connect job for device=dev-004 refused by Redis"));
    CHECK(device("dev-005")->connect(b.port()) == 0);
    CHECK(eventually([&] { return stream_length(redis) == 1; }));
}
