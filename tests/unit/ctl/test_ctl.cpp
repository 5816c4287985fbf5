// devicegate-ctl's commands in-process (ctl::run takes its streams) against a real
// redis-server: output, exit codes, and what they leave in Redis.
#include "ctl.hpp"
#include "ctl_runner.hpp"
#include "devicegate/denylist.hpp"
#include "devicegate/job.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/revocation_store.hpp"
#include "redis_process.hpp"

#include <catch2/catch.hpp>

#include <sstream>

using namespace devicegate;

namespace {

struct fixture {
    test::redis_process server;

    test::ctl_result ctl(const std::vector<std::string>& args, const std::string& prefix = "") {
        return test::run_ctl(server.url(), args, prefix);
    }
    void device(const std::string& id, std::map<std::string, std::string> fields) {
        std::vector<std::string> argv{"HSET", redis_model{}.device(id)};
        for (const auto& [k, v] : fields) argv.insert(argv.end(), {k, v});
        server.command(argv);
    }
    std::string dead_letter(const std::string& device, const std::string& error) {
        return reply_string(server.command({"XADD", redis_model{}.dead_jobs(), "*", job_field::type, "first_connect",
                                            job_field::job, "{\"device_id\":\"" + device + "\"}", job_field::reason,
                                            "permanent", job_field::attempts, "1", job_field::failed_at, "1795000000",
                                            job_field::device_id, device, job_field::error, error})
                                .get(),
                            "XADD");
    }
};

}  // namespace

TEST_CASE("ctl: arguments are checked before Redis is asked", "[ctl]") {
    fixture f;
    f.server.kill();  // any attempt to reach Redis would exit 2
    auto none = f.ctl({});
    CHECK(none.code == ctl::usage);
    CHECK_THAT(none.err, Catch::Contains("missing command") && Catch::Contains("usage: devicegate-ctl"));
    CHECK_THAT(f.ctl({"frobnicate"}).err, Catch::Contains("unknown command frobnicate"));
    CHECK_THAT(f.ctl({"list-revoked", "--bogus"}).err, Catch::Contains("unknown option --bogus"));
    CHECK_THAT(f.ctl({"revoke", "--reason"}).err, Catch::Contains("--reason needs a value"));
    for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"revoke"}, "revoke needs a device id or --serial HEX"},
             {{"unrevoke"}, "unrevoke needs a device id or --serial HEX"},
             {{"revoke", "dev/1"}, "\"dev/1\" is not a device id"},
             {{"revoke", "--serial", "xyz"}, "--serial needs a hex serial"},
             {{"revoke", "dev-1", "--serial", "0A"}, "give a device id or --serial, not both"},
             {{"revoke", "dev-1", "dev-2"}, "too many arguments"},
             {{"status"}, "status needs a device id"},
             {{"status", "--serial", "0A"}, "status needs a device id"},
             {{"dlq"}, "dlq needs list, replay, delete or trim"},
             {{"dlq", "list", "--count", "0"}, "--count needs a positive number"},
             {{"dlq", "list", "--count", "many"}, "--count needs a number"},
             {{"dlq", "replay"}, "dlq replay needs an entry id or --all"},
             {{"dlq", "replay", "1-0", "--all"}, "dlq replay needs an entry id or --all"},
             {{"dlq", "replay", "1-0", "2-0"}, "too many arguments"},
         }) {
        auto r = f.ctl(args);
        INFO(args[0] << " -> " << r.err);
        CHECK(r.code == ctl::usage);
        CHECK_THAT(r.err, Catch::Contains(message));
    }
    std::ostringstream out, err;
    CHECK(ctl::run({"list-revoked"}, out, err, "mysql://x", "") == ctl::usage);
    CHECK_THAT(err.str(), Catch::Contains("bad Redis URL"));
    for (const char* help : {"--help", "-h"}) {  // asked for: stdout, exit 0
        std::ostringstream help_out, help_err;
        CHECK(ctl::run({help}, help_out, help_err, "", "") == ctl::ok);
        CHECK_THAT(help_out.str(), Catch::StartsWith("usage: devicegate-ctl"));
        CHECK(help_err.str().empty());
    }
    auto down = f.ctl({"list-revoked"});
    CHECK(down.code == ctl::unreachable);
    CHECK_THAT(down.err, Catch::Contains("cannot reach Redis at 127.0.0.1:" + std::to_string(f.server.port())));
}

TEST_CASE("ctl: revoke, status, list-revoked, unrevoke", "[ctl]") {
    fixture f;
    f.device("dev-1", {{device_field::first_seen, "1795000000"},
                       {device_field::serial, "0A7A"},
                       {device_field::fingerprint, "AB12"},
                       {device_field::broker, "b1"},
                       {device_field::thingsboard, "registered"},
                       {device_field::thingsboard_id, "uuid-1"},
                       {device_field::hawkbit, "failed"},
                       {device_field::last_error, "hawkbit: HTTP 400"}});
    auto unknown = f.ctl({"revoke", "dev-never"});
    CHECK(unknown.code == ctl::not_found);
    CHECK_THAT(unknown.err, Catch::Contains("unknown device dev-never"));
    CHECK(f.ctl({"status", "dev-never"}).code == ctl::not_found);
    CHECK(f.ctl({"list-revoked"}).out == "nothing is revoked\n");

    auto status = f.ctl({"status", "dev-1"});
    CHECK(status.code == ctl::ok);
    CHECK(status.out == "device:       dev-1\n"
                        "revoked:      no\n"
                        "first seen:   2026-11-18T11:06:40Z (broker b1)\n"
                        "serial:       0A7A\n"
                        "fingerprint:  AB12\n"
                        "thingsboard:  registered (device uuid-1)\n"
                        "hawkbit:      failed\n"
                        "registered:   -\n"
                        "last error:   hawkbit: HTTP 400\n");

    auto revoked = f.ctl({"revoke", "dev-1", "--reason", "stolen"});
    CHECK(revoked.code == ctl::ok);
    CHECK(revoked.out == "revoked device dev-1; 0 broker(s) notified (none is listening now: brokers apply it when they "
                         "reconnect to Redis)\n");
    CHECK_THAT(f.ctl({"status", "dev-1"}).out, Catch::Contains("revoked:      yes, by device id, reason=\"stolen\" at="));
    CHECK_THAT(f.ctl({"revoke", "--serial", "0x0a:7a"}).out, Catch::StartsWith("revoked serial 0A7A; "));
    auto list = f.ctl({"list-revoked"}).out;
    CHECK_THAT(list, Catch::Contains("device dev-1 reason=\"stolen\""));
    CHECK_THAT(list, Catch::Contains("serial 0A7A reason=\"revoked by operator\""));

    CHECK(f.ctl({"unrevoke", "dev-1"}).code == ctl::ok);
    CHECK_THAT(f.ctl({"status", "dev-1"}).out, Catch::Contains("revoked:      yes, by serial"));  // its certificate still is
    CHECK(f.ctl({"unrevoke", "--serial", "0A7A"}).code == ctl::ok);
    CHECK_THAT(f.ctl({"status", "dev-1"}).out, Catch::Contains("revoked:      no"));
    auto again = f.ctl({"unrevoke", "dev-1"});
    CHECK(again.code == ctl::not_found);
    CHECK_THAT(again.err, Catch::Contains("device dev-1 is not revoked"));
    // --force: before the first connect; a revoked device that never connected has a status.
    CHECK(f.ctl({"revoke", "dev-future", "--force"}).code == ctl::ok);
    CHECK_THAT(f.ctl({"status", "dev-future"}).out, Catch::Contains("revoked:      yes, by device id"));
}

TEST_CASE("ctl: a listening broker is counted; the prefix selects the keys", "[ctl]") {
    fixture f;
    revocation_subscription sub(f.server.options(), redis_model{"other:"});
    auto r = f.ctl({"--prefix", "other:", "revoke", "dev-1", "--force"});
    CHECK(r.out == "revoked device dev-1; 1 broker(s) notified\n");
    auto change = sub.next_change(std::chrono::milliseconds(1000));
    REQUIRE(change);
    CHECK(parse_denylist_change(*change).value == "dev-1");
    CHECK(reply_integer(f.server.command({"HEXISTS", "other:revoked:device", "dev-1"}).get(), "HEXISTS") == 1);
    CHECK(f.ctl({"list-revoked"}).out == "nothing is revoked\n");  // devicegate: is empty
    CHECK_THAT(f.ctl({"list-revoked"}, "other:").out, Catch::Contains("device dev-1"));
}

TEST_CASE("ctl: unexpected data in Redis is exit code 4", "[ctl]") {
    fixture f;
    f.server.command({"SET", "devicegate:revoked:device", "oops"});
    auto bad = f.ctl({"list-revoked"});
    CHECK(bad.code == ctl::bad_data);
    CHECK_THAT(bad.err, Catch::Contains("unexpected data in Redis") && Catch::Contains("WRONGTYPE"));
    f.server.command({"SET", "devicegate:jobs:dead", "oops"});
    CHECK(f.ctl({"dlq", "list"}).code == ctl::bad_data);
}

TEST_CASE("ctl: dlq list and replay", "[ctl]") {
    fixture f;
    CHECK(f.ctl({"dlq", "list"}).out == "the dead-letter stream is empty\n");
    CHECK(f.ctl({"dlq", "replay", "--all"}).out == "the dead-letter stream is empty\n");
    const std::string first = f.dead_letter("dev-1", "hawkbit: POST /rest/v1/targets: HTTP 400");
    const std::string second = f.dead_letter("dev-2", "thingsboard: HTTP 503");
    f.dead_letter("dev-3", "thingsboard: HTTP 503");

    auto list = f.ctl({"dlq", "list", "--count", "2"});
    CHECK(list.code == ctl::ok);
    CHECK(list.out == first + "  device=dev-1 type=first_connect reason=permanent attempts=1 failed_at=2026-11-18T11:06:40Z\n"
                              "    error: hawkbit: POST /rest/v1/targets: HTTP 400\n" +
                          second + "  device=dev-2 type=first_connect reason=permanent attempts=1 failed_at=2026-11-18T11:06:40Z\n"
                                   "    error: thingsboard: HTTP 503\n"
                                   "(2 of 3 shown)\n");

    auto one = f.ctl({"dlq", "replay", first});
    CHECK(one.out == "replayed 1 job(s) onto devicegate:jobs\n");
    auto jobs = reply_stream_entries(f.server.command({"XRANGE", "devicegate:jobs", "-", "+"}).get(), "jobs");
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].fields == std::map<std::string, std::string>{{job_field::type, "first_connect"},
                                                                 {job_field::job, "{\"device_id\":\"dev-1\"}"},
                                                                 {job_field::replayed_from, first}});
    auto gone = f.ctl({"dlq", "replay", first});
    CHECK(gone.code == ctl::not_found);
    CHECK_THAT(gone.err, Catch::Contains("no dead-lettered job " + first));
    CHECK(f.ctl({"dlq", "replay", "--all"}).out == "replayed 2 job(s) onto devicegate:jobs\n");
    CHECK(reply_integer(f.server.command({"XLEN", "devicegate:jobs:dead"}).get(), "XLEN") == 0);
    CHECK(reply_integer(f.server.command({"XLEN", "devicegate:jobs"}).get(), "XLEN") == 3);
    CHECK(f.ctl({"dlq", "list"}).out == "the dead-letter stream is empty\n");
}

TEST_CASE("ctl: reregister enqueues a first-connect job from the stored certificate", "[ctl]") {
    fixture f;
    const std::string pem = read_file(std::string(DEVICEGATE_TEST_PKI) + "/devices/dev-001.crt", 1 << 20);
    auto certs = parse_certificates(pem, "test");
    const std::string leaf_pem = pem.substr(0, pem.find("-----END CERTIFICATE-----") + 25) + "\n";
    const std::string fp = fingerprint_hex(certificate_sha256(certs.at(0).get()));
    const std::map<std::string, std::string> registered{{device_field::first_seen, "1795000000"},
                                                        {device_field::fingerprint, fp},
                                                        {device_field::thingsboard, "registered"},
                                                        {device_field::thingsboard_id, "uuid-1"},
                                                        {device_field::thingsboard_fingerprint, fp},
                                                        {device_field::hawkbit, "registered"},
                                                        {device_field::registered_at, "1795000001"}};
    CHECK(f.ctl({"reregister"}).code == ctl::usage);
    CHECK(f.ctl({"reregister", "a b"}).code == ctl::usage);
    auto unknown = f.ctl({"reregister", "dev-never"});
    CHECK(unknown.code == ctl::not_found);
    CHECK_THAT(unknown.err, Catch::Contains("unknown device dev-never"));
    auto hash_of = [&](const std::string& id) {
        return reply_hash(f.server.command({"HGETALL", redis_model{}.device(id)}).get(), "HGETALL");
    };

    SECTION("with the certificate the worker stored: a job now") {
        auto fields = registered;
        fields[device_field::certificate] = leaf_pem;
        f.device("dev-001", fields);
        auto r = f.ctl({"reregister", "dev-001"});
        CHECK(r.code == ctl::ok);
        CHECK_THAT(r.out, Catch::Contains("registration job enqueued"));
        auto hash = hash_of("dev-001");
        CHECK(hash.count(device_field::thingsboard) == 0);
        CHECK(hash.count(device_field::hawkbit) == 0);
        CHECK(hash.at(device_field::fingerprint) == fp);
        auto jobs = reply_stream_entries(f.server.command({"XRANGE", redis_model{}.jobs(), "-", "+"}).get(), "jobs");
        REQUIRE(jobs.size() == 1);
        job j = parse_job(jobs[0].fields.at(job_field::job));  // checks the fingerprint against the PEM
        CHECK(j.type == job_type::first_connect);
        CHECK(j.cert.device_id == "dev-001");
        CHECK(j.cert.first_seen == 1795000000);
    }
    SECTION("registered by an older worker (no certificate): forgotten, enqueued on a later connect") {
        f.device("dev-001", registered);
        auto r = f.ctl({"reregister", "dev-001"});
        CHECK(r.code == ctl::ok);
        CHECK_THAT(r.out, Catch::Contains("registration forgotten"));
        auto hash = hash_of("dev-001");
        CHECK(hash.count(device_field::fingerprint) == 0);  // job_producer's first-connect condition
        CHECK(hash.count(device_field::thingsboard) == 0);
        CHECK(hash.at(device_field::last_error) == "reregister requested by operator");
        CHECK(reply_integer(f.server.command({"XLEN", redis_model{}.jobs()}).get(), "XLEN") == 0);
    }
}

TEST_CASE("ctl: dlq delete and dlq trim", "[ctl]") {
    fixture f;
    const std::string one = f.dead_letter("dev-1", "e1");
    f.dead_letter("dev-2", "e2");
    f.dead_letter("dev-3", "e3");
    auto del = f.ctl({"dlq", "delete", one});
    CHECK(del.code == ctl::ok);
    CHECK(del.out == "deleted dead-lettered job " + one + "\n");
    CHECK(f.ctl({"dlq", "delete", one}).code == ctl::not_found);
    CHECK(f.ctl({"dlq", "delete"}).code == ctl::usage);
    CHECK(f.ctl({"dlq", "trim"}).code == ctl::usage);
    CHECK(f.ctl({"dlq", "trim", "--max", "-1"}).code == ctl::usage);
    auto trimmed = f.ctl({"dlq", "trim", "--max", "1"});
    CHECK(trimmed.code == ctl::ok);
    CHECK(trimmed.out == "trimmed 1 dead-lettered job(s); at most 1 kept\n");
    auto list = f.ctl({"dlq", "list"}).out;
    CHECK_THAT(list, Catch::Contains("device=dev-3"));
    CHECK(list.find("device=dev-2") == std::string::npos);
}
