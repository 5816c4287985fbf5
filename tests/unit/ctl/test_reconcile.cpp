// devicegate-ctl reconcile in-process: a real redis-server, the in-process fakes, and a worker
// configuration file naming them (the ctl reads the backends' credentials from it).
#include "ctl.hpp"
#include "devicegate/revocation_store.hpp"
#include "fake_backend_clients.hpp"
#include "issued_job.hpp"
#include "redis_process.hpp"

#include <catch2/catch.hpp>

#include <iomanip>
#include <sstream>

using namespace devicegate;
using namespace devicegate::worker;

namespace {

struct result {
    int code;
    std::string out;
    std::string err;
};

/// Redis, both fakes, the worker's clients to set them up, and the worker configuration file.
struct reconcile_fixture : test::fake_backend_clients {
    test::redis_process redis;
    test::temp_dir dir;
    std::string config = write_config("admin");

    std::string write_config(const std::string& hawkbit_password, const std::string& name = "worker.conf") {
        const std::string path = dir.file(name);
        test::write_file(path, "redis_url " + redis.url() + "\nthingsboard_url " + tb.url() +
                                   "\nthingsboard_username tenant@thingsboard.org\nthingsboard_password tenant\n"
                                   "hawkbit_url " + hb.url() + "\nhawkbit_username admin\nhawkbit_password " +
                                   hawkbit_password + "\ntenant_ca_file " + test::pki("subca-a.crt") + "\nica_file " +
                                   test::pki("ica.crt") + "\nroot_ca_file " + test::pki("root.crt") + "\n");
        return path;
    }
    result reconcile(std::vector<std::string> args, const std::string& worker_config = "") {
        args.insert(args.begin(), {"reconcile", "--worker-config", worker_config.empty() ? config : worker_config});
        std::ostringstream out, err;
        const int code = ctl::run(args, out, err, "", "");
        return {code, out.str(), err.str()};
    }
    void hset(const std::string& id, const std::map<std::string, std::string>& fields) {
        std::vector<std::string> argv{"HSET", redis_model{}.device(id)};
        for (const auto& [k, v] : fields) argv.insert(argv.end(), {k, v});
        redis.command(argv);
    }
    /// A device as the worker leaves it: in both fakes, its hash with the registration fields.
    job registered(const std::string& id) {
        job j = test::issued_job(id);
        auto r = thingsboard->register_device(j);
        hawkbit->ensure_target(id);
        hset(id, {{device_field::first_seen, "1795000000"}, {device_field::serial, j.cert.serial_hex},
                  {device_field::fingerprint, j.cert.fingerprint_sha256}, {device_field::broker, "b1"},
                  {device_field::thingsboard, "registered"}, {device_field::thingsboard_id, r.device_uuid},
                  {device_field::thingsboard_fingerprint, j.cert.fingerprint_sha256},
                  {device_field::hawkbit, "registered"}, {device_field::registered_at, "1795000001"},
                  {device_field::certificate, j.cert.certificate_pem}});
        return j;
    }
    long long jobs() const { return reply_integer(redis.command({"XLEN", redis_model{}.jobs()}).get(), "XLEN"); }
    std::string field(const std::string& id, const char* name) const {
        auto v = reply_optional_string(redis.command({"HGET", redis_model{}.device(id), name}).get(), "HGET");
        return v ? *v : "";
    }
};

/// A line of the summary table.
std::string row(const std::string& name, const std::string& thingsboard, const std::string& hawkbit) {
    std::ostringstream out;
    out << std::left << std::setw(14) << name << std::right << std::setw(12) << thingsboard << std::setw(10) << hawkbit
        << "\n";
    return out.str();
}

}  // namespace

TEST_CASE("reconcile: Redis and both backends in step, read over several pages", "[ctl][reconcile]") {
    reconcile_fixture f;
    for (int i = 0; i < 12; ++i) f.registered("dev-" + std::to_string(10 + i));
    auto r = f.reconcile({"--page-size", "5"});
    INFO(r.out << r.err);
    CHECK(r.code == ctl::ok);
    CHECK_THAT(r.out, Catch::StartsWith("redis: 12 devices (0 revoked or decommissioned)\n"));
    CHECK_THAT(r.out, Catch::Contains(row("listed", "12", "12")) && Catch::Contains(row("in step", "12", "12")) &&
                          Catch::Contains(row("missing", "0", "0")) && Catch::EndsWith("result: in step\n"));
    CHECK(f.jobs() == 0);
}

TEST_CASE("reconcile: each kind of difference is found, and nothing changes without --fix", "[ctl][reconcile]") {
    reconcile_fixture f;
    for (int i = 1; i <= 6; ++i) f.registered("dev-0" + std::to_string(i));
    REQUIRE(f.tb.delete_device("dev-01"));
    REQUIRE(f.hawkbit->delete_target("dev-02") == "deleted");
    f.thingsboard->register_device(test::issued_job("dev-03"));  // someone put another certificate there
    const revocation_entry stolen{"stolen", 1795000000, "test"};
    f.redis.command({"HSET", redis_model{}.revoked_devices(), "dev-04", encode_revocation_entry(stolen)});
    f.redis.command({"HSET", redis_model{}.revoked_serials(), *normalize_serial_hex(f.field("dev-05", device_field::serial)),
                     encode_revocation_entry(stolen)});
    f.hset("dev-06", {{device_field::decommissioned, "1795000002"}});
    f.hset("pending-1", {{device_field::fingerprint, "00"}});  // its job is still queued: not compared
    f.thingsboard->register_device(test::issued_job("stray-tb"));
    f.hawkbit->ensure_target("stray-hb");
    const auto tb_requests_before_deletes = f.tb.state()["deletes"];

    auto r = f.reconcile({"--page-size", "2"});
    INFO(r.out << r.err);
    CHECK(r.code == 1);
    for (const char* line : {
             "missing thingsboard dev-01: registered in Redis, absent in ThingsBoard\n",
             "missing hawkbit dev-02: registered in Redis, absent in hawkBit\n",
             "revoked thingsboard dev-04: revoked in Redis, still in ThingsBoard (devicegate-ctl revoke dev-04 --decommission removes it)\n",
             "revoked hawkbit dev-04: revoked in Redis, still in hawkBit",
             "revoked thingsboard dev-05: revoked in Redis",
             "revoked hawkbit dev-06: decommissioned in Redis, still in hawkBit",
             "orphan thingsboard stray-tb: in ThingsBoard, unknown to Redis (reported only: reconcile never deletes)\n",
             "orphan hawkbit stray-hb: in hawkBit, unknown to Redis",
         }) {
        CHECK_THAT(r.out, Catch::Contains(line));
    }
    CHECK_THAT(r.out, Catch::Contains("credentials thingsboard dev-03: ThingsBoard holds X509_CERTIFICATE ") &&
                          Catch::Contains(", Redis's current certificate is " +
                                          f.field("dev-03", device_field::fingerprint).substr(0, 16)));
    CHECK_THAT(r.out, Catch::Contains("redis: 7 devices (3 revoked or decommissioned)\n"));
    CHECK_THAT(r.out, Catch::Contains(row("listed", "6", "6")) && Catch::Contains(row("in step", "1", "2")) &&
                          Catch::Contains(row("pending", "1", "1")) && Catch::Contains(row("missing", "1", "1")) &&
                          Catch::Contains(row("orphan", "1", "1")) && Catch::Contains(row("credentials", "1", "-")) &&
                          Catch::Contains(row("revoked", "3", "3")));
    CHECK_THAT(r.out, Catch::EndsWith("result: 11 differences\n"));
    CHECK(r.out.find("re-enqueued") == std::string::npos);
    // Report mode: no job, no hash changed, nothing deleted.
    CHECK(f.jobs() == 0);
    CHECK(f.field("dev-01", device_field::thingsboard) == "registered");
    CHECK(f.tb.state()["deletes"] == tb_requests_before_deletes);
    CHECK(f.hb.state()["deletes"] == 1);  // the test's own
}

TEST_CASE("reconcile --fix: one registration job per device, like reregister; never a delete", "[ctl][reconcile]") {
    reconcile_fixture f;
    f.registered("dev-01");
    f.registered("dev-02");
    const job ok = f.registered("dev-03");
    REQUIRE(f.tb.delete_device("dev-01"));
    REQUIRE(f.hawkbit->delete_target("dev-01") == "deleted");  // missing in both: still one job
    f.thingsboard->register_device(test::issued_job("dev-02"));
    f.hawkbit->ensure_target("stray-hb");
    const std::string fp01 = f.field("dev-01", device_field::fingerprint);

    auto r = f.reconcile({"--fix"});
    INFO(r.out << r.err);
    CHECK(r.code == 1);  // the orphan is left: --fix never deletes
    CHECK_THAT(r.out, Catch::Contains("missing thingsboard dev-01: registered in Redis, absent in ThingsBoard; re-enqueued\n") &&
                          Catch::Contains("missing hawkbit dev-01: registered in Redis, absent in hawkBit; re-enqueued\n") &&
                          Catch::Contains("credentials thingsboard dev-02: ") &&
                          Catch::Contains("orphan hawkbit stray-hb: in hawkBit, unknown to Redis (reported only"));
    CHECK_THAT(r.out, Catch::EndsWith("result: 4 differences; 2 devices re-enqueued, 1 left (orphans and revoked devices "
                                      "are never deleted)\n"));
    auto entries = reply_stream_entries(f.redis.command({"XRANGE", redis_model{}.jobs(), "-", "+"}).get(), "jobs");
    REQUIRE(entries.size() == 2);
    job first = parse_job(entries[0].fields.at(job_field::job));
    job second = parse_job(entries[1].fields.at(job_field::job));
    CHECK(first.cert.device_id == "dev-01");
    CHECK(first.cert.fingerprint_sha256 == fp01);  // from the certificate the worker stored
    CHECK(first.type == job_type::first_connect);
    CHECK(second.cert.device_id == "dev-02");
    CHECK(f.field("dev-01", device_field::thingsboard).empty());  // reregister's bookkeeping
    CHECK(f.field("dev-01", device_field::last_error) == "reregister requested by operator");
    CHECK(f.field("dev-03", device_field::thingsboard) == "registered");
    CHECK(ok.cert.device_id == "dev-03");
    CHECK(f.hb.state()["targets"] == 3);  // dev-02, dev-03, stray-hb: nothing deleted
    CHECK(f.hb.state()["deletes"] == 1);  // the test's own

    // Until the worker ran, a second --fix finds them pending: no second job.
    auto again = f.reconcile({"--fix"});
    CHECK(again.code == 1);
    CHECK(f.jobs() == 2);
    CHECK_THAT(again.out, Catch::Contains(row("pending", "2", "2")));
}

TEST_CASE("reconcile --fix: exit 0 when every difference was acted on", "[ctl][reconcile]") {
    reconcile_fixture f;
    f.registered("dev-01");
    f.registered("dev-02");
    f.registered("dev-03");
    REQUIRE(f.hawkbit->delete_target("dev-02") == "deleted");
    REQUIRE(f.hawkbit->delete_target("dev-03") == "deleted");
    f.redis.command({"HDEL", redis_model{}.device("dev-03"), device_field::certificate});  // an older worker's record
    auto r = f.reconcile({"--fix", "--backend", "hawkbit"});
    INFO(r.out << r.err);
    CHECK(r.code == ctl::ok);
    CHECK_THAT(r.out, Catch::Contains("missing hawkbit dev-03: registered in Redis, absent in hawkBit; registration "
                                      "forgotten (no stored certificate): enqueued when it next connects"));
    CHECK_THAT(r.out, Catch::EndsWith("result: 2 differences; 1 devices re-enqueued, 0 left (orphans and revoked devices "
                                      "are never deleted)\n"));
    CHECK(f.jobs() == 1);
    CHECK(f.field("dev-03", device_field::fingerprint).empty());  // reregister's way to have the plugin enqueue it
}

TEST_CASE("reconcile: --backend reads only that backend; --limit and --verbose bound the lines", "[ctl][reconcile]") {
    reconcile_fixture f;
    for (int i = 1; i <= 3; ++i) {
        f.registered("dev-0" + std::to_string(i));
        REQUIRE(f.hawkbit->delete_target("dev-0" + std::to_string(i)) == "deleted");
    }
    const auto tb_requests = f.tb.state()["requests"].get<long long>();
    auto limited = f.reconcile({"--backend", "hawkbit", "--limit", "1"});
    INFO(limited.out << limited.err);
    CHECK(limited.code == 1);
    CHECK(f.tb.state()["requests"].get<long long>() == tb_requests);  // ThingsBoard never asked
    CHECK_THAT(limited.out, Catch::StartsWith("missing hawkbit dev-01: registered in Redis, absent in hawkBit\n"
                                              "(2 more: --verbose shows all)\n"));
    CHECK_THAT(limited.out, Catch::Contains(row("missing", "-", "3")));
    auto all = f.reconcile({"--backend", "hawkbit", "--verbose"});
    CHECK_THAT(all.out, Catch::Contains("missing hawkbit dev-03") && !Catch::Contains("more: --verbose"));
    CHECK(f.reconcile({"--backend", "hawkbit", "--limit", "0"}).out.find("missing hawkbit") == std::string::npos);
}

TEST_CASE("reconcile: bad arguments are refused before anything is read", "[ctl][reconcile]") {
    reconcile_fixture f;
    f.redis.kill();
    for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--backend", "mqtt"}, "--backend needs thingsboard, hawkbit or all"},
             {{"--limit", "x"}, "--limit needs a number 0..1000000"},
             {{"--limit", "1", "--verbose"}, "give --limit or --verbose, not both"},
             {{"--page-size", "0"}, "--page-size needs a number 1..500"},
             {{"--page-size", "501"}, "--page-size needs a number 1..500"},
             {{"dev-1"}, "reconcile takes no device id"},
         }) {
        auto r = f.reconcile(args);
        INFO(r.err);
        CHECK(r.code == ctl::usage);
        CHECK_THAT(r.err, Catch::Contains(message));
    }
}

TEST_CASE("reconcile: an error is exit 2 naming the backend, the call and the status", "[ctl][reconcile]") {
    reconcile_fixture f;
    f.registered("dev-01");
    REQUIRE(f.tb.delete_device("dev-01"));
    SECTION("ThingsBoard answers 503 (after the retries)") {
        f.tb.set_faults({.path = "/api/tenant/devices", .fail_always = 503});
        auto r = f.reconcile({"--fix"});
        CHECK(r.code == ctl::unreachable);
        CHECK_THAT(r.err, Catch::StartsWith("devicegate-ctl: reconcile: thingsboard: GET /api/tenant/devices (page 0): HTTP 503"));
        CHECK(r.out.empty());
        CHECK(f.jobs() == 0);  // a failed scan fixes nothing
    }
    SECTION("hawkBit answers 400") {
        f.hb.set_faults({.path = "/rest/v1/targets", .fail_always = 400});
        auto r = f.reconcile({});
        CHECK(r.code == ctl::unreachable);
        CHECK_THAT(r.err, Catch::StartsWith("devicegate-ctl: reconcile: hawkbit: GET /rest/v1/targets (offset 0): HTTP 400"));
    }
    SECTION("hawkBit refuses the login") {
        auto r = f.reconcile({}, f.write_config("Hb-Secret-9", "wrong.conf"));
        CHECK(r.code == ctl::unreachable);
        CHECK_THAT(r.err, Catch::Contains("reconcile: hawkbit: login refused (GET /rest/v1/targets: HTTP 401") &&
                              Catch::Contains("(the credentials come from " + f.dir.file("wrong.conf") + ")") &&
                              !Catch::Contains("Hb-Secret-9") && !Catch::Contains("consumption paused"));
    }
    SECTION("no worker configuration") {
        auto r = f.reconcile({}, f.dir.file("absent.conf"));
        CHECK(r.code == ctl::unreachable);
        CHECK_THAT(r.err, Catch::Contains("cannot read the worker configuration " + f.dir.file("absent.conf")) &&
                              Catch::Contains("give --worker-config FILE"));
    }
    SECTION("a worker configuration without a backend") {
        const std::string path = f.dir.file("partial.conf");
        test::write_file(path, "hawkbit_url http://127.0.0.1:1\n");
        auto r = f.reconcile({}, path);
        CHECK(r.code == ctl::unreachable);
        CHECK_THAT(r.err, Catch::Contains("worker configuration " + path + ": thingsboard_url: required"));
    }
    SECTION("Redis is down") {
        f.redis.kill();
        auto r = f.reconcile({});
        CHECK(r.code == ctl::unreachable);
        CHECK_THAT(r.err, Catch::Contains("reconcile: cannot reach Redis at 127.0.0.1:"));
    }
}

TEST_CASE("reconcile: a backend's names are hostile input: printed escaped, never used as Redis keys", "[ctl][reconcile]") {
    reconcile_fixture f;
    f.registered("dev-01");
    REQUIRE(f.hawkbit->ensure_target("weird\"id\x7f*") == "created");  // hawkBit only refuses whitespace
    f.redis.command({"HSET", redis_model{}.device("weird\"id\x7f*"), "fingerprint", "00"});  // not a device id: ignored
    auto r = f.reconcile({"--backend", "hawkbit"});
    INFO(r.out << r.err);
    CHECK(r.code == 1);
    CHECK_THAT(r.out, Catch::Contains("orphan hawkbit weird\\\"id\\x7f*: in hawkBit, unknown to Redis"));
    CHECK_THAT(r.out, Catch::Contains("redis: 1 devices (0 revoked or decommissioned); 1 keys ignored (not a device id)\n"));
}
