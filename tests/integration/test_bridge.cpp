// devicegate-bridge end to end: the enrollment guide's steps with openssl, curl and
// mosquitto_pub against the running bridge (embedded CA) and the real broker with the plugin;
// every refusal; renewal over mTLS; revocation through the deny-list and the CRL; EST.
#include "csr_factory.hpp"
#include "ctl.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/redis.hpp"
#include "embedded_ca.hpp"
#include "bridge_store.hpp"
#include "enroll_tokens.hpp"
#include "fake_stepca.hpp"
#include "jwt.hpp"
#include "stepca_signer.hpp"
#include "harness.hpp"
#include "wireguard.hpp"

#include <catch2/catch.hpp>

#include <ctime>
#include <fstream>
#include <future>
#include <sstream>

using namespace devicegate::itest;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int not_authorized = 135;
const std::string api_key = "operator-key-0123456789";

struct shell_result {
    int exit_code = -1;
    std::string out;
};

shell_result sh(const std::string& cmd) {
    shell_result r;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct bridge_options {
    std::string rate_limit = "1000";
    std::vector<std::pair<std::string, std::string>> extra;
};

/// devicegate-bridge with the embedded CA (Sub-CA A of the test PKI) on free ports.
class bridge_process {
public:
    bridge_process(const redis_server& redis, bridge_options o = {})
        : dir_(test_dir() / "bridge"), port_(free_port()), crl_port_(free_port()) {
        fs::create_directories(dir_);
        gateway_ = devicegate::bridge::generate_wireguard_keypair();
        std::ostringstream conf;
        conf << "listen 127.0.0.1:" << port_ << "\ncrl_listen 127.0.0.1:" << crl_port_ << "\n"
             << "tls_cert " << pki("server-chain.crt") << "\ntls_key " << pki("server.key") << "\n"
             << "sub_ca_file " << pki("subca-a.crt") << "\nica_file " << pki("ica.crt") << "\nroot_file "
             << pki("root.crt") << "\nca_key_file " << pki("subca-a.key") << "\nstate_dir " << (dir_ / "state").string()
             << "\nredis_url " << redis.url() << "\noperator_api_key " << api_key << "\nrate_limit " << o.rate_limit
             << "\nwg_pool 10.80.0.0/16\nwg_gateway_public_key " << gateway_.public_key
             << "\nwg_endpoint gw.example.com:51820\nwg_allowed_ips 10.80.0.0/16\nwg_dns 10.80.0.1\n";
        for (const auto& [k, v] : o.extra) conf << k << " " << v << "\n";
        write_text(dir_ / "bridge.conf", conf.str());
    }
    /// Starts it (again); true once this run listens. The log is appended to across runs.
    bool start() {
        const std::size_t from = log().size();
        process_ = std::make_unique<process>(
            std::vector<std::string>{DEVICEGATE_BRIDGE_PATH, "-c", (dir_ / "bridge.conf").string()}, dir_ / "bridge.log");
        return eventually([&] { return log().find("listening on", from) != std::string::npos || !process_->running(); }) &&
               process_->running();
    }
    void stop() { process_.reset(); }
    /// The exit status of a run that ended (a refused start), or nullopt.
    std::optional<int> exit_status() { return process_ ? process_->wait_exit(5s) : std::nullopt; }
    /// Sets `key` for the next start (a later line wins).
    void set(const std::string& key, const std::string& value) {
        std::ofstream(dir_ / "bridge.conf", std::ios::app) << key << " " << value << "\n";
    }
    /// devicegate-bridge --check: its exit code and output.
    std::pair<int, std::string> check() const {
        process p({DEVICEGATE_BRIDGE_PATH, "-c", (dir_ / "bridge.conf").string(), "--check"}, dir_ / "check.log");
        const int rc = p.wait_exit(std::chrono::seconds(20)).value_or(-1);
        return {rc, slurp(dir_ / "check.log")};
    }
    /// A second devicegate-bridge on the same settings (ports): its exit code (-1 if it kept
    /// running for 20 s) and output.
    std::pair<int, std::string> run_twin() const {
        process p({DEVICEGATE_BRIDGE_PATH, "-c", (dir_ / "bridge.conf").string()}, dir_ / "twin.log");
        const int rc = p.wait_exit(std::chrono::seconds(20)).value_or(-1);
        return {rc, slurp(dir_ / "twin.log")};
    }
    std::string url() const { return "https://localhost:" + std::to_string(port_); }
    std::string crl_url() const { return "http://127.0.0.1:" + std::to_string(crl_port_) + "/crl"; }
    std::string log() const { return slurp(dir_ / "bridge.log"); }
    bool wait_for_log(const std::string& needle) const {
        return eventually([&] { return log().find(needle) != std::string::npos; });
    }
    const std::string& gateway_public_key() const { return gateway_.public_key; }

private:
    fs::path dir_;
    int port_, crl_port_;
    devicegate::bridge::wireguard_keypair gateway_;
    std::unique_ptr<process> process_;
};

enum class broker_mode { none, deny_list, crl_url };

/// redis-server, devicegate-bridge and, if asked, the broker with the plugin on the same Redis
/// (with crl_url: also following the bridge's CRL), all started.
struct stack {
    redis_server redis;
    bridge_process bridge;
    std::unique_ptr<broker> b;
    fs::path dir = test_dir();
    explicit stack(broker_mode mode = broker_mode::none, bridge_options o = {}) : bridge(redis, std::move(o)) {
        REQUIRE(redis.start());
        REQUIRE(bridge.start());
        if (mode == broker_mode::none) return;
        broker_options bo{.redis = &redis};
        if (mode == broker_mode::crl_url) {
            bo.plugin_opts = {{"crl_url", bridge.crl_url()}, {"crl_refresh", "1s"}};
            bo.crl_files = {};
        }
        b = std::make_unique<broker>(bo);
        REQUIRE(b->start());
        if (mode == broker_mode::crl_url) REQUIRE(b->wait_for_log("crl loaded url=" + bridge.crl_url()));
    }
};

std::string token_for(const redis_server& redis, const std::string& id, const std::string& ttl = "24h") {
    std::ostringstream out, err;
    const int rc = devicegate::ctl::run({"--redis", redis.url(), "enroll-token", id, "--ttl", ttl}, out, err, "", "");
    REQUIRE(rc == 0);
    std::string token = out.str();
    while (!token.empty() && token.back() == '\n') token.pop_back();
    return token;
}

struct http_result {
    int status = 0;
    std::string body;
    json j() const { return json::parse(body, nullptr, false); }
};

/// curl against the bridge with the test root as trust anchor; `args` are extra curl arguments.
http_result curl(const std::string& url, const std::string& args) {
    const fs::path out = test_dir() / ("curl-" + std::to_string(free_port()) + ".out");
    auto r = sh("curl -s -S --cacert " + pki("root.crt") + " -o " + out.string() + " -w '%{http_code}' " + args + " '" +
                url + "'");
    return {std::atoi(r.out.c_str()), slurp(out)};
}

/// Step 1 of the guide with openssl: <dir>/<name>.key and <dir>/<name>.csr with CN=cn.
void key_and_csr(const fs::path& dir, const std::string& name, const std::string& cn,
                 const std::string& newkey = "ec -pkeyopt ec_paramgen_curve:P-256") {
    auto r = sh("openssl req -new -newkey " + newkey + " -nodes -keyout " + (dir / (name + ".key")).string() + " -subj /CN=" +
                cn + " -out " + (dir / (name + ".csr")).string());
    REQUIRE(r.exit_code == 0);
}

/// {"csr_pem": <the CSR file>} in a file, for curl -d @file.
std::string body_file(const fs::path& dir, const std::string& name, const std::string& csr_pem) {
    const fs::path p = dir / (name + ".json");
    write_text(p, json{{"csr_pem", csr_pem}}.dump());
    return "@" + p.string();
}

http_result enroll(const bridge_process& bridge, const std::string& id, const std::string& token, const std::string& data) {
    std::string args = "-X POST -H 'Content-Type: application/json' --data-binary '" + data + "'";
    if (!token.empty()) args += " -H 'Authorization: Bearer " + token + "'";
    return curl(bridge.url() + "/devices/" + id + "/enroll", args);
}

/// Enrolls `id` with a fresh P-256 key: writes <dir>/<id>.key, .crt, ca-chain.crt, wg0.conf.
json enroll_device(const bridge_process& bridge, const redis_server& redis, const fs::path& dir, const std::string& id) {
    key_and_csr(dir, id, id);
    auto r = enroll(bridge, id, token_for(redis, id), body_file(dir, id, slurp(dir / (id + ".csr"))));
    REQUIRE(r.status == 200);
    json j = r.j();
    write_text(dir / (id + ".crt"), j["certificate_pem"].get<std::string>());
    write_text(dir / "ca-chain.crt", j["ca_chain_pem"].get<std::string>());
    write_text(dir / "wg0.conf", j["wireguard_config"].get<std::string>());
    return j;
}

std::string serial_of_file(const fs::path& cert) {
    auto r = sh("openssl x509 -noout -serial -in " + cert.string());
    return r.out.substr(r.out.find('=') + 1, r.out.find_last_not_of("\n") - r.out.find('='));
}

devicegate::redis_connection connect_to(const redis_server& redis) {
    devicegate::redis_options o;
    o.port = redis.port();
    return devicegate::redis_connection(o);
}

/// The number of jobs ever added to the stream (entries the worker deleted included: the
/// count comes from XINFO STREAM entries-added, Redis 7), and those still in it.
long long jobs_added(const redis_server& redis) {
    auto c = connect_to(redis);
    auto r = c.command({"XINFO", "STREAM", "devicegate:jobs"});
    if (r->type != REDIS_REPLY_ARRAY) return 0;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) {
        if (std::string(r->element[i]->str, r->element[i]->len) == "entries-added") return r->element[i + 1]->integer;
    }
    return -1;
}

/// "type device_id" of each job in the stream.
std::vector<std::string> job_types(const redis_server& redis) {
    auto c = connect_to(redis);
    auto r = c.command({"XRANGE", "devicegate:jobs", "-", "+"});
    std::vector<std::string> out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* fields = r->element[i]->element[1];
        for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (std::string(fields->element[f]->str) != "job") continue;
            auto job = json::parse(fields->element[f + 1]->str);
            out.push_back(job["type"].get<std::string>() + " " + job["device_id"].get<std::string>());
        }
    }
    return out;
}

}  // namespace

TEST_CASE("the enrollment guide end to end: token, openssl CSR, curl enroll, registered in hawkBit, mosquitto_pub over mTLS",
          "[integration][bridge]") {
    stack s(broker_mode::crl_url);
    auto& [redis, bridge, broker_ptr, dir] = s;
    broker& b = *broker_ptr;
    fake_backends fakes;
    REQUIRE(fakes.start());
    worker_process worker(redis, fakes);
    REQUIRE(worker.start());

    // Steps 1-3: key and CSR on the device, POST with the token, outputs saved.
    const std::string token = token_for(redis, "device-001");
    CHECK(redis.command({"KEYS", "devicegate:enroll:token:*"}).find(token) == std::string::npos);  // only a hash
    key_and_csr(dir, "device", "device-001");
    auto r = enroll(bridge, "device-001", token, body_file(dir, "device", slurp(dir / "device.csr")));
    REQUIRE(r.status == 200);
    // The guide's JSON, in the guide's order.
    const auto at = [&](const char* k) { return r.body.find(std::string("\"") + k + "\""); };
    CHECK(at("device_id") < at("certificate_pem"));
    CHECK(at("certificate_pem") < at("ca_chain_pem"));
    CHECK(at("ca_chain_pem") < at("wireguard_config"));
    CHECK(at("wireguard_config") != std::string::npos);
    json j = r.j();
    CHECK(j["device_id"] == "device-001");
    write_text(dir / "device.crt", j["certificate_pem"].get<std::string>());
    write_text(dir / "ca-chain.crt", j["ca_chain_pem"].get<std::string>());

    // Step 4: the chain reads device-001 -> Sub-CA -> ICA -> Root; the profile is the server's.
    CHECK(sh("openssl verify -CAfile " + (dir / "ca-chain.crt").string() + " " + (dir / "device.crt").string()).exit_code == 0);
    CHECK(sh("grep -c 'BEGIN CERTIFICATE' " + (dir / "ca-chain.crt").string()).out == "3\n");
    auto text = sh("openssl x509 -noout -subject -ext extendedKeyUsage,subjectAltName -in " + (dir / "device.crt").string()).out;
    CHECK_THAT(text, Catch::Contains("CN = device-001") && Catch::Contains("TLS Web Client Authentication") &&
                         Catch::Contains("DNS:device-001"));
    CHECK(bridge.wait_for_log("audit op=enroll device=device-001 source=127.0.0.1 outcome=ok"));
    CHECK(bridge.log().find(token) == std::string::npos);

    // The hawkBit target exists before the first MQTT connect.
    CHECK(eventually([&] { return fakes.hawkbit_state().at("targets").get<long long>() == 1; }, 10s));
    CHECK(jobs_added(redis) == 1);

    // Step 5: mosquitto_pub with the saved files; the first connect enqueues nothing more.
    auto pub = sh("mosquitto_pub -V mqttv5 -q 1 --host localhost --port " + std::to_string(b.port()) + " --cafile " +
                  (dir / "ca-chain.crt").string() + " --cert " + (dir / "device.crt").string() + " --key " +
                  (dir / "device.key").string() + " --tls-version tlsv1.2 -i device-001 -t v1/devices/me/telemetry -m '{\"test\": 1}'");
    CHECK(pub.exit_code == 0);
    CHECK(pub.out == "");
    CHECK(b.wait_for_log("devicegate: allow client=device-001"));
    // The plugin hands jobs to Redis in order: once another device's first connect is in the
    // stream, device-001's connect has been through the script, and added nothing.
    REQUIRE(device("dev-001")->connect(b.port()) == 0);
    CHECK(eventually([&] { return jobs_added(redis) >= 2; }));
    CHECK(jobs_added(redis) == 2);
    // One hawkBit create per device: dev-001's, and device-001's from the enrollment only.
    CHECK(eventually([&] { return fakes.hawkbit_state().at("targets").get<long long>() == 2; }, 10s));
    CHECK(fakes.hawkbit_state().at("creates").get<long long>() == 2);

    // status says where the device was first seen: at enrollment, not on a broker.
    CHECK_THAT(ctl({"status", "device-001"}, redis.url()).out,
               Catch::Contains("(enrolled through devicegate-bridge)") && !Catch::Contains("(broker devicegate-bridge)"));

    // The token was single use.
    auto again = enroll(bridge, "device-001", token, body_file(dir, "device", slurp(dir / "device.csr")));
    CHECK(again.status == 401);
    CHECK(again.j()["error"] == "token_unknown_used_or_expired");
}

TEST_CASE("enrollment refusals: each names its problem, is audited, and signs nothing", "[integration][bridge]") {
    stack s(broker_mode::none, {.extra = {{"max_body_bytes", "4096"}}});
    auto& [redis, bridge, broker_ptr, dir] = s;
    key_and_csr(dir, "dev", "dev-1");
    const std::string good = body_file(dir, "dev", slurp(dir / "dev.csr"));
    auto expect = [&](const http_result& r, int status, const std::string& error) {
        INFO(r.body);
        CHECK(r.status == status);
        CHECK(r.j()["error"] == error);
        CHECK(r.j()["message"].is_string());
        CHECK(bridge.wait_for_log("outcome=" + error));
    };

    SECTION("no token") { expect(enroll(bridge, "dev-1", "", good), 401, "token_missing"); }
    SECTION("an unknown token") { expect(enroll(bridge, "dev-1", "dgt_nonsense", good), 401, "token_unknown_used_or_expired"); }
    SECTION("an expired token") {
        devicegate::redis_options o;
        o.port = redis.port();
        devicegate::redis_connection c(o);
        const std::string token =
            devicegate::bridge::create_enroll_token(c, devicegate::redis_model{}, "dev-1", std::chrono::milliseconds(50));
        std::this_thread::sleep_for(200ms);  // the token's own lifetime: nothing to poll
        expect(enroll(bridge, "dev-1", token, good), 401, "token_unknown_used_or_expired");
    }
    SECTION("a token for another device is refused and used up") {
        const std::string token = token_for(redis, "dev-2");
        key_and_csr(dir, "dev2", "dev-2");
        expect(enroll(bridge, "dev-1", token, good), 403, "token_for_another_device");
        CHECK(enroll(bridge, "dev-2", token, body_file(dir, "dev2", slurp(dir / "dev2.csr"))).status == 401);
    }
    SECTION("CN != id, a CSR signed by another key, a weak key: the token stays usable") {
        const std::string token = token_for(redis, "dev-1");
        key_and_csr(dir, "other", "dev-9");
        expect(enroll(bridge, "dev-1", token, body_file(dir, "other", slurp(dir / "other.csr"))), 400, "csr_cn_mismatch");
        auto key = devicegate::test::make_key("P-256");
        auto thief = devicegate::test::make_key("P-256");
        const std::string forged = devicegate::test::make_csr_pem(key.get(), {{{"CN", "dev-1"}}, {}}, thief.get());
        expect(enroll(bridge, "dev-1", token, body_file(dir, "forged", forged)), 400, "csr_bad_signature");
        key_and_csr(dir, "weak", "dev-1", "rsa:1024");
        expect(enroll(bridge, "dev-1", token, body_file(dir, "weak", slurp(dir / "weak.csr"))), 400, "csr_key_refused");
        CHECK(enroll(bridge, "dev-1", token, good).status == 200);
    }
    SECTION("garbage JSON, a missing field, an unsafe id, an oversized body") {
        expect(enroll(bridge, "dev-1", "", "{not json"), 400, "bad_request");
        expect(enroll(bridge, "dev-1", "", "{\"csr\":1}"), 400, "bad_request");
        expect(enroll(bridge, "dev%2B1", "", good), 400, "bad_device_id");
        write_text(dir / "big.json", json{{"csr_pem", std::string(8000, 'A')}}.dump());
        expect(enroll(bridge, "dev-1", "", "@" + (dir / "big.json").string()), 413, "body_too_large");
    }
    CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == (bridge.log().find("outcome=ok") != std::string::npos ? 1 : 0));
}

TEST_CASE("enrollment: requests over the per-source rate limit get 429", "[integration][bridge]") {
    stack s(broker_mode::none, {.rate_limit = "3"});
    auto& bridge = s.bridge;
    for (int i = 0; i < 3; ++i) CHECK(enroll(bridge, "dev-1", "", "{}").status == 400);
    auto r = enroll(bridge, "dev-1", "", "{}");
    CHECK(r.status == 429);
    CHECK(r.j()["error"] == "rate_limited");
    CHECK(bridge.wait_for_log("outcome=rate_limited"));
    CHECK(curl(bridge.url() + "/.well-known/est/cacerts", "").status == 200);  // GETs are not limited
}

namespace {

http_result renew(const bridge_process& bridge, const std::string& id, const fs::path& cert, const fs::path& key,
                  const std::string& data) {
    std::string args = "-X POST --data-binary '" + data + "'";
    if (!cert.empty()) args += " --cert " + cert.string() + " --key " + key.string();
    return curl(bridge.url() + "/devices/" + id + "/renew", args);
}

http_result revoke(const bridge_process& bridge, const std::string& id, const std::string& key = api_key) {
    return curl(bridge.url() + "/devices/" + id + "/revoke",
                "-X POST -H 'X-Api-Key: " + key + "' --data-binary '{\"reason\":\"stolen\",\"reason_code\":1}'");
}

/// A certificate of Sub-CA A for `id` that expired an hour ago, with its key.
void write_expired(const fs::path& dir, const std::string& id) {
    namespace test = devicegate::test;
    namespace bridge = devicegate::bridge;
    using devicegate::max_certificate_file_bytes;
    using devicegate::parse_certificates;
    using devicegate::read_file;
    auto key = test::make_key("P-256");
    auto csr = bridge::check_csr(test::make_csr_pem(key.get(), id), id);
    REQUIRE(csr.problem == bridge::csr_problem::ok);
    auto ca_cert = parse_certificates(read_file(pki("subca-a.crt"), max_certificate_file_bytes), "subca");
    auto ca_key = bridge::read_private_key(pki("subca-a.key"));
    bridge::certificate_profile expired{std::chrono::seconds(-3600), std::chrono::seconds(7200)};
    auto cert = bridge::make_device_certificate(csr.csr.get(), id, ca_cert[0].get(), ca_key.get(),
                                                bridge::random_serial().get(), expired);
    write_text(dir / (id + "-expired.crt"), bridge::to_pem(cert.get()));
    write_text(dir / (id + "-expired.key"), test::key_pem(key.get()));
}

}  // namespace

TEST_CASE("renewal over mTLS: the current certificate renews; none, expired, revoked, other tenant or other id do not",
          "[integration][bridge]") {
    stack s(broker_mode::deny_list);
    auto& [redis, bridge, broker_ptr, dir] = s;
    broker& b = *broker_ptr;
    enroll_device(bridge, redis, dir, "dev-r");
    key_and_csr(dir, "next", "dev-r");
    const std::string next = body_file(dir, "next", slurp(dir / "next.csr"));
    auto expect = [&](const http_result& r, int status, const std::string& error) {
        INFO(r.body);
        CHECK(r.status == status);
        CHECK(r.j()["error"] == error);
        CHECK(bridge.wait_for_log("op=renew device=dev-r source=127.0.0.1 outcome=" + error));
    };

    SECTION("the current certificate renews; the new one connects; its change is enqueued") {
        auto r = renew(bridge, "dev-r", dir / "dev-r.crt", dir / "dev-r.key", next);
        REQUIRE(r.status == 200);
        write_text(dir / "next.crt", r.j()["certificate_pem"].get<std::string>());
        CHECK(serial_of_file(dir / "next.crt") != serial_of_file(dir / "dev-r.crt"));
        client renewed("dev-r", (dir / "next.crt").string(), (dir / "next.key").string());
        CHECK(renewed.connect(b.port()) == 0);
        // Registration at enrollment, certificate_changed at renewal; the connect adds nothing
        // (another device's first connect, queued after it, shows that it has been handled).
        REQUIRE(device("dev-001")->connect(b.port()) == 0);
        CHECK(eventually([&] { return job_types(redis).size() >= 3; }));
        CHECK(job_types(redis) ==
              std::vector<std::string>{"first_connect dev-r", "certificate_changed dev-r", "first_connect dev-001"});
    }
    SECTION("no client certificate") { expect(renew(bridge, "dev-r", "", "", next), 401, "client_certificate_missing"); }
    SECTION("an expired certificate") {
        write_expired(dir, "dev-r");
        expect(renew(bridge, "dev-r", dir / "dev-r-expired.crt", dir / "dev-r-expired.key", next), 403, "certificate_expired");
    }
    SECTION("another tenant's certificate") {
        expect(renew(bridge, "dev-r", pki("devices/tenant-b-dev-chain.crt"), pki("devices/tenant-b-dev.key"), next), 403,
               "certificate_untrusted");
    }
    SECTION("another device's certificate") {
        expect(renew(bridge, "dev-r", pki("devices/dev-001.crt"), pki("devices/dev-001.key"), next), 403,
               "certificate_for_another_device");
    }
    SECTION("a revoked certificate") {
        REQUIRE(revoke(bridge, "dev-r").status == 200);
        expect(renew(bridge, "dev-r", dir / "dev-r.crt", dir / "dev-r.key", next), 403, "certificate_revoked");
    }
}

TEST_CASE("renewal refuses what the brokers' CRLs refuse: a listed certificate, a revoked Sub-CA, a stale or missing CRL",
          "[integration][bridge][crl]") {
    const fs::path dir = test_dir();
    key_and_csr(dir, "next1", "dev-001");
    key_and_csr(dir, "next2", "dev-002");
    const std::string for_001 = body_file(dir, "next1", slurp(dir / "next1.csr"));
    const std::string for_002 = body_file(dir, "next2", slurp(dir / "next2.csr"));
    auto renew_pki = [&](const bridge_process& bridge, const std::string& id, const std::string& body) {
        return renew(bridge, id, pki("devices/" + id + ".crt"), pki("devices/" + id + ".key"), body);
    };
    auto expect = [](const bridge_process& bridge, const http_result& r, int status, const std::string& error,
                     const std::string& named) {
        INFO(r.body);
        CHECK(r.status == status);
        CHECK(r.j()["error"] == error);
        CHECK_THAT(r.j()["message"].get<std::string>(), Catch::Contains(named));
        CHECK(bridge.wait_for_log("op=renew device=dev-00"));
        CHECK(bridge.log().find("outcome=" + error) != std::string::npos);
    };
    SECTION("a certificate issued outside this bridge and listed on the Sub-CA's CRL (the broker refuses it: revoked_crl)") {
        stack s(broker_mode::none, {.extra = {{"crl_file", pki("subca-a-revokes-dev-002.crl.pem")}}});
        expect(s.bridge, renew_pki(s.bridge, "dev-002", for_002), 403, "certificate_revoked", "subca-a-revokes-dev-002.crl.pem");
        CHECK(renew_pki(s.bridge, "dev-001", for_001).status == 200);  // not on the CRL: renews
        // EST simplereenroll authenticates the same way.
        REQUIRE(sh("openssl req -in " + (dir / "next2.csr").string() + " -outform DER | openssl base64 > " +
                   (dir / "next2.b64").string()).exit_code == 0);
        auto est = curl(s.bridge.url() + "/.well-known/est/simplereenroll",
                        "-X POST -H 'Content-Type: application/pkcs10' --data-binary @" + (dir / "next2.b64").string() +
                            " --cert " + pki("devices/dev-002.crt") + " --key " + pki("devices/dev-002.key"));
        CHECK(est.status == 403);
        CHECK(est.j()["error"] == "certificate_revoked");
    }
    SECTION("a CRL file that changes while the bridge runs is followed") {
        const fs::path crl = dir / "live.crl.pem";
        write_text(crl, slurp(pki("subca-a.crl.pem")));
        stack s(broker_mode::none, {.extra = {{"crl_file", crl.string()}}});
        CHECK(renew_pki(s.bridge, "dev-002", for_002).status == 200);
        replace_file(crl, pki("subca-a-revokes-dev-002.crl.pem"));
        CHECK(eventually([&] { return renew_pki(s.bridge, "dev-002", for_002).status == 403; }));
    }
    SECTION("the Sub-CA revoked on the ICA's CRL: no device renews") {
        stack s(broker_mode::none, {.extra = {{"crl_file", pki("subca-a.crl.pem")}, {"crl_file", pki("ica-revokes-subca-a.crl.pem")}}});
        expect(s.bridge, renew_pki(s.bridge, "dev-001", for_001), 403, "ca_revoked", "tenant chain is revoked");
    }
    SECTION("a CRL past nextUpdate and crl_grace: 503 naming it; crl_stale_policy allow renews, as the plugin admits") {
        stack s(broker_mode::none, {.extra = {{"crl_file", pki("subca-a-stale.crl.pem")}, {"crl_grace", "1h"}}});
        expect(s.bridge, renew_pki(s.bridge, "dev-001", for_001), 503, "crl_stale", "subca-a-stale.crl.pem");
        s.bridge.stop();
        bridge_process allow(s.redis, {.extra = {{"crl_file", pki("subca-a-stale.crl.pem")}, {"crl_stale_policy", "allow"}}});
        REQUIRE(allow.start());
        CHECK(renew_pki(allow, "dev-001", for_001).status == 200);
    }
    SECTION("a CRL URL that has not answered yet: 503, nothing signed") {
        const std::string url = "http://127.0.0.1:" + std::to_string(free_port()) + "/crl";
        stack s(broker_mode::none, {.extra = {{"crl_url", url}}});
        expect(s.bridge, renew_pki(s.bridge, "dev-001", for_001), 503, "crl_unavailable", url);
    }
    SECTION("a bad CRL file stops the start, naming the file") {
        redis_server redis;
        REQUIRE(redis.start());
        bridge_process bad(redis, {.extra = {{"crl_file", pki("subca-b.crl.pem")}}});
        CHECK_FALSE(bad.start());
        CHECK_THAT(bad.log(), Catch::Contains("subca-b.crl.pem"));
        const auto [rc, out] = bad.check();
        CHECK(rc == 1);
        CHECK_THAT(out, Catch::Contains("subca-b.crl.pem"));
        bridge_process good(redis, {.extra = {{"crl_file", pki("subca-a.crl.pem")}}});
        CHECK(good.check().first == 0);
    }
}

TEST_CASE("revoke: a serial this CA did not issue is reported and audited, never counted as revoked; reason_code is "
          "checked on its 64-bit value",
          "[integration][bridge]") {
    stack s(broker_mode::none);
    auto& [redis, bridge, broker_ptr, dir] = s;
    enroll_device(bridge, redis, dir, "dev-n");
    const std::string own = serial_of_file(dir / "dev-n.crt");
    {
        // As another bridge sharing this Redis records what it issued (bridge_store.hpp).
        auto c = connect_to(redis);
        devicegate::bridge::remember_serial(c, devicegate::redis_model{}, "dev-n", "0A01");
    }
    SECTION("reason_code values that wrap in a 32-bit int are refused; nothing is revoked") {
        for (const std::string code : {"4294967297", "4294967303", "-4294967295", "18446744073709551617", "7", "1.5", "\"1\""}) {
            INFO(code);
            auto r = curl(bridge.url() + "/devices/dev-n/revoke",
                          "-X POST -H 'X-Api-Key: " + api_key + "' --data-binary '{\"reason_code\":" + code + "}'");
            CHECK(r.status == 400);
            CHECK_THAT(r.j()["message"].get<std::string>(), Catch::Contains("reason_code"));
        }
        auto c = connect_to(redis);
        CHECK(c.command({"HEXISTS", "devicegate:revoked:device", "dev-n"})->integer == 0);
    }
    SECTION("a POST without Content-Length: cpp-httplib times out reading the body; the 400 names the cause, audited") {
        auto r = curl(bridge.url() + "/devices/dev-n/revoke", "-X POST -H 'X-Api-Key: " + api_key + "'");
        CHECK(r.status == 400);
        CHECK_THAT(r.j()["message"].get<std::string>(), Catch::Contains("no Content-Length"));
        CHECK(bridge.wait_for_log("op=http device=- source=127.0.0.1 outcome=body_unreadable"));
        auto c = connect_to(redis);
        CHECK(c.command({"HEXISTS", "devicegate:revoked:device", "dev-n"})->integer == 0);
        // With Content-Length: 0 (curl -d '') the empty body is the defaults.
        CHECK(curl(bridge.url() + "/devices/dev-n/revoke", "-X POST -H 'X-Api-Key: " + api_key + "' -d ''").status == 200);
    }
    SECTION("the foreign serial is listed as not revoked, with the cause; the audit line says partial") {
        auto r = revoke(bridge, "dev-n");
        INFO(r.body);
        REQUIRE(r.status == 200);
        CHECK(r.j()["revoked_serials"] == json::array({own}));
        REQUIRE(r.j()["not_revoked_serials"].size() == 1);
        CHECK(r.j()["not_revoked_serials"][0]["serial"] == "0A01");
        CHECK_THAT(r.j()["not_revoked_serials"][0]["message"].get<std::string>(), Catch::Contains("not issued by this CA"));
        CHECK(bridge.wait_for_log("op=revoke device=dev-n source=127.0.0.1 outcome=partial"));
        CHECK_THAT(bridge.log(), Catch::Contains("not_revoked=0A01"));
        // Again: its own serial is now already revoked; the foreign one is still not revoked.
        auto again = revoke(bridge, "dev-n");
        CHECK(again.j()["revoked_serials"].empty());
        CHECK(again.j()["already_revoked_serials"] == json::array({own}));
        CHECK(again.j()["not_revoked_serials"].size() == 1);
    }
}

TEST_CASE("revocation: kicked at once, refused on reconnect, listed in the CRL that the plugin's crl_url follows",
          "[integration][bridge]") {
    stack s(broker_mode::crl_url);
    auto& [redis, bridge, broker_ptr, dir] = s;
    broker& b = *broker_ptr;
    enroll_device(bridge, redis, dir, "dev-v");
    const std::string serial = serial_of_file(dir / "dev-v.crt");
    client dev("dev-v", (dir / "dev-v.crt").string(), (dir / "dev-v.key").string());
    REQUIRE(dev.connect(b.port()) == 0);

    CHECK(revoke(bridge, "dev-v", "wrong-key-0123456789").status == 401);
    CHECK(revoke(bridge, "dev-v", "").status == 401);
    CHECK(dev.connected());
    auto r = revoke(bridge, "dev-v");
    REQUIRE(r.status == 200);
    CHECK(r.j()["revoked_serials"] == json::array({serial}));
    CHECK(r.j()["brokers_notified"] == 1);
    CHECK(r.j()["decommission_enqueued"] == false);
    CHECK(dev.wait_disconnected(5s));
    CHECK(b.wait_for_log("devicegate: kick client=dev-v reason="));
    client again("dev-v", (dir / "dev-v.crt").string(), (dir / "dev-v.key").string());
    CHECK(again.connect(b.port()) == not_authorized);

    // The CRL at {api}/crl (HTTPS) and on the plain-HTTP listener lists it.
    write_text(dir / "crl.der", curl(bridge.url() + "/crl", "").body);
    CHECK_THAT(sh("openssl crl -inform DER -noout -text -in " + (dir / "crl.der").string()).out,
               Catch::Contains("Serial Number: " + serial) && Catch::Contains("Key Compromise"));
    CHECK(sh("openssl crl -inform DER -noout -CAfile " + (dir / "ca-chain.crt").string() + " -in " +
             (dir / "crl.der").string()).out.find("verify OK") != std::string::npos);
    // Take the device off the deny-list: the CRL the plugin fetched from the bridge still refuses it.
    CHECK(ctl({"unrevoke", "dev-v"}, redis.url()).exit_code == 0);
    CHECK(eventually([&] {
        client retry("dev-v", (dir / "dev-v.crt").string(), (dir / "dev-v.key").string());
        return retry.connect(b.port()) == not_authorized && b.log_contains("devicegate: deny client=dev-v reason=revoked_crl");
    }, 10s));
}

TEST_CASE("revocation with {\"decommission\": true} also enqueues the decommission job for the worker",
          "[integration][bridge][decommission]") {
    stack s;
    auto& [redis, bridge, broker_ptr, dir] = s;
    enroll_device(bridge, redis, dir, "dev-d");
    const std::string base = "-X POST -H 'X-Api-Key: " + api_key + "' --data-binary ";
    auto bad = curl(bridge.url() + "/devices/dev-d/revoke", base + "'{\"decommission\":\"yes\"}'");
    CHECK(bad.status == 400);
    CHECK(redis.integer({"HEXISTS", "devicegate:revoked:device", "dev-d"}) == 0);  // refused before the deny-list
    const long long before = redis.integer({"XLEN", "devicegate:jobs"});
    auto r = curl(bridge.url() + "/devices/dev-d/revoke", base + "'{\"reason\":\"lost\",\"decommission\":true}'");
    REQUIRE(r.status == 200);
    CHECK(r.j()["decommission_enqueued"] == true);
    const std::string job_id = r.j()["decommission_job"].get<std::string>();
    CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == before + 1);
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection conn(o);
    auto range = conn.command({"XRANGE", "devicegate:jobs", job_id, job_id});
    REQUIRE(range->type == REDIS_REPLY_ARRAY);
    REQUIRE(range->elements == 1);
    std::string entry;
    const redisReply* fields = range->element[0]->element[1];
    for (std::size_t i = 0; i < fields->elements; ++i) entry += std::string(fields->element[i]->str, fields->element[i]->len) + "\n";
    CHECK_THAT(entry, Catch::Contains("\"type\":\"decommission\"") && Catch::Contains("\"device_id\":\"dev-d\"") &&
                          Catch::Contains("\"reason\":\"lost\""));
    CHECK(redis.integer({"HEXISTS", "devicegate:revoked:device", "dev-d"}) == 1);
}

TEST_CASE("EST (RFC 7030) with curl and openssl: cacerts, simpleenroll with a token, simplereenroll over mTLS",
          "[integration][bridge]") {
    stack s;
    auto& [redis, bridge, broker_ptr, dir] = s;
    const std::string est = bridge.url() + "/.well-known/est";

    auto cacerts = curl(est + "/cacerts", "-D " + (dir / "headers").string());
    REQUIRE(cacerts.status == 200);
    CHECK_THAT(slurp(dir / "headers"), Catch::Contains("application/pkcs7-mime") && Catch::Contains("Content-Transfer-Encoding: base64"));
    write_text(dir / "cacerts.b64", cacerts.body);
    auto certs = sh("openssl base64 -d -in " + (dir / "cacerts.b64").string() + " | openssl pkcs7 -inform DER -print_certs -noout");
    CHECK_THAT(certs.out, Catch::Contains("subject=CN = Tenant A Sub-CA") && Catch::Contains("subject=CN = DeviceGate Test ICA") &&
                              Catch::Contains("subject=CN = DeviceGate Test Root"));

    key_and_csr(dir, "est", "dev-est");
    REQUIRE(sh("openssl req -in " + (dir / "est.csr").string() + " -outform DER | openssl base64 > " + (dir / "est.b64").string()).exit_code == 0);
    const std::string csr_arg = "-X POST -H 'Content-Type: application/pkcs10' --data-binary @" + (dir / "est.b64").string();
    auto refused = curl(est + "/simpleenroll", csr_arg);
    CHECK(refused.status == 401);
    CHECK(refused.j()["error"] == "token_missing");
    auto wrong = curl(est + "/simpleenroll", "-X POST --data-binary 'not base64 at all'");
    CHECK(wrong.status == 400);
    CHECK(wrong.j()["error"] == "csr_unparsable");
    auto enrolled = curl(est + "/simpleenroll", csr_arg + " -H 'Authorization: Bearer " + token_for(redis, "dev-est") + "'");
    REQUIRE(enrolled.status == 200);
    write_text(dir / "issued.b64", enrolled.body);
    REQUIRE(sh("openssl base64 -d -in " + (dir / "issued.b64").string() + " | openssl pkcs7 -inform DER -print_certs -out " +
               (dir / "est.crt").string()).exit_code == 0);
    CHECK_THAT(sh("openssl x509 -noout -subject -issuer -in " + (dir / "est.crt").string()).out,
               Catch::Contains("subject=CN = dev-est") && Catch::Contains("issuer=CN = Tenant A Sub-CA"));

    auto reenroll = curl(est + "/simplereenroll", csr_arg + " --cert " + (dir / "est.crt").string() + " --key " + (dir / "est.key").string());
    REQUIRE(reenroll.status == 200);
    CHECK(curl(est + "/simplereenroll", csr_arg).j()["error"] == "client_certificate_missing");
    CHECK(curl(est + "/simplereenroll", csr_arg + " --cert " + pki("devices/dev-001.crt") + " --key " + pki("devices/dev-001.key"))
              .j()["error"] == "certificate_for_another_device");
}

TEST_CASE("WireGuard: the device's own key or a generated pair; stable addresses; wg-peers verifiable with wg pubkey",
          "[integration][bridge]") {
    stack s;
    auto& [redis, bridge, broker_ptr, dir] = s;
    json first = enroll_device(bridge, redis, dir, "dev-w1");
    const std::string conf = first["wireguard_config"];
    CHECK_THAT(conf, Catch::Contains("Address = 10.80.0.2/32") && Catch::Contains("PublicKey = " + bridge.gateway_public_key()) &&
                         Catch::Contains("Endpoint = gw.example.com:51820") && Catch::Contains("PersistentKeepalive = 25") &&
                         Catch::Contains("DNS = 10.80.0.1"));
    const auto pk = conf.find("PrivateKey = ");
    REQUIRE(pk != std::string::npos);
    const std::string private_key = conf.substr(pk + 13, 44);

    // The device sends its own public key: no private key in the answer.
    auto own = devicegate::bridge::generate_wireguard_keypair();
    key_and_csr(dir, "dev-w2", "dev-w2");
    write_text(dir / "w2.json", json{{"csr_pem", slurp(dir / "dev-w2.csr")}, {"wireguard_public_key", own.public_key}}.dump());
    auto r = enroll(bridge, "dev-w2", token_for(redis, "dev-w2"), "@" + (dir / "w2.json").string());
    REQUIRE(r.status == 200);
    CHECK_THAT(r.j()["wireguard_config"].get<std::string>(), Catch::Contains("Address = 10.80.0.3/32") && !Catch::Contains("\nPrivateKey"));
    // Re-enrollment keeps the address.
    CHECK(enroll_device(bridge, redis, dir, "dev-w1")["wireguard_config"].get<std::string>().find("Address = 10.80.0.2/32") !=
          std::string::npos);

    std::ostringstream out, err;
    REQUIRE(devicegate::ctl::run({"--redis", redis.url(), "wg-peers"}, out, err, "", "") == 0);
    write_text(dir / "peers.conf", out.str());
    CHECK_THAT(out.str(), Catch::Contains("# dev-w2\nPublicKey = " + own.public_key + "\nAllowedIPs = 10.80.0.3/32"));
    // The generated pair is consistent: wg pubkey of the device's private key is the peer's key.
    // (The re-enrollment generated a new pair; its private key is in the latest wg0.conf.)
    const std::string latest = slurp(dir / "wg0.conf");
    const std::string latest_private = latest.substr(latest.find("PrivateKey = ") + 13, 44);
    CHECK(latest_private != private_key);
    auto pub = sh("echo '" + latest_private + "' | wg pubkey");
    REQUIRE(pub.exit_code == 0);
    CHECK_THAT(out.str(), Catch::Contains("# dev-w1\nPublicKey = " + pub.out.substr(0, 44) + "\nAllowedIPs = 10.80.0.2/32"));
    std::ostringstream o2, e2;
    CHECK(devicegate::ctl::run({"--redis", "redis://127.0.0.1:1", "wg-peers"}, o2, e2, "", "") == 2);
    CHECK(devicegate::ctl::run({"--redis", redis.url(), "enroll-token", "bad/id"}, o2, e2, "", "") == 1);
    CHECK(devicegate::ctl::run({"--redis", redis.url(), "enroll-token", "dev-x", "--ttl", "1000h"}, o2, e2, "", "") == 1);
}

namespace {

/// The fake step-ca (signing with Sub-CA A) and its JWK provisioner's key in a file.
struct stepca_signer_setup {
    devicegate::evp_pkey_ptr provisioner = devicegate::test::make_key("P-256");
    fs::path key_file = test_dir() / "provisioner.key";
    devicegate::test::fake_stepca ca{{pki("server-chain.crt"), pki("server.key"), pki("subca-a.crt"), pki("subca-a.key"),
                                      "devicegate", devicegate::test::public_key_pem(provisioner.get()),
                                      devicegate::bridge::jwk_thumbprint(provisioner.get()), "localhost"}};
    stepca_signer_setup() {
        write_text(key_file, devicegate::test::key_pem(provisioner.get()));
        REQUIRE(ca.start());
    }
    /// The bridge settings for it, and `more`.
    bridge_options options(std::vector<std::pair<std::string, std::string>> more = {}) const {
        more.insert(more.end(), {{"signer", "stepca"},
                                 {"stepca_url", ca.url()},
                                 {"stepca_root_file", pki("root.crt")},
                                 {"stepca_provisioner", "devicegate"},
                                 {"stepca_key_file", key_file.string()}});
        return {.extra = more};
    }
};

}  // namespace

TEST_CASE("the guide with step-ca as signer (the fake step-ca): enroll, connect, revoke at step-ca, CA failures are 502",
          "[integration][bridge][stepca]") {
    stepca_signer_setup setup;
    auto& ca = setup.ca;
    stack s(broker_mode::deny_list, setup.options());
    auto& [redis, bridge, broker_ptr, dir] = s;
    broker& b = *broker_ptr;

    enroll_device(bridge, redis, dir, "dev-s");
    CHECK(ca.signed_count() == 1);
    CHECK(sh("openssl verify -CAfile " + (dir / "ca-chain.crt").string() + " " + (dir / "dev-s.crt").string()).exit_code == 0);
    client dev("dev-s", (dir / "dev-s.crt").string(), (dir / "dev-s.key").string());
    REQUIRE(dev.connect(b.port()) == 0);
    // step-ca publishes its own CRL: the bridge has none.
    CHECK(curl(bridge.url() + "/crl", "").status == 404);
    // Renewal follows step-ca's CRL by default; this fake serves none, so renewal fails closed.
    CHECK(bridge.log().find("renewal checks the CRLs from " + ca.url() + "/1.0/crl") != std::string::npos);
    key_and_csr(dir, "dev-s-next", "dev-s");
    auto renewed = renew(bridge, "dev-s", dir / "dev-s.crt", dir / "dev-s.key", body_file(dir, "dev-s-next", slurp(dir / "dev-s-next.csr")));
    CHECK(renewed.status == 503);
    CHECK(renewed.j()["error"] == "crl_unavailable");
    CHECK(ca.signed_count() == 1);

    auto r = revoke(bridge, "dev-s");
    REQUIRE(r.status == 200);
    const std::string serial = serial_of_file(dir / "dev-s.crt");
    CHECK(ca.is_revoked(devicegate::bridge::serial_hex_to_decimal(serial)));
    CHECK(dev.wait_disconnected(5s));
    // A second revoke finds it revoked at step-ca already, and still answers 200.
    auto second = revoke(bridge, "dev-s");
    CHECK(second.status == 200);
    CHECK(second.j()["already_revoked_serials"] == json::array({serial}));
    CHECK(second.j()["not_revoked_serials"].empty());

    key_and_csr(dir, "dev-t", "dev-t");
    ca.fail_next_sign(500);
    const std::string token_t = token_for(redis, "dev-t");
    auto failed = enroll(bridge, "dev-t", token_t, body_file(dir, "dev-t", slurp(dir / "dev-t.csr")));
    CHECK(failed.status == 502);
    CHECK(failed.j()["error"] == "ca_failed");
    CHECK(bridge.wait_for_log("CA: step-ca answered HTTP 500"));
    CHECK(bridge.log().find("BEGIN CERTIFICATE REQUEST") == std::string::npos);
    // "retry later" holds: the token was put back, and the retry enrolls.
    CHECK_THAT(failed.j()["message"].get<std::string>(), Catch::Contains("the enrollment token remains valid for a retry"));
    CHECK(enroll(bridge, "dev-t", token_t, body_file(dir, "dev-t", slurp(dir / "dev-t.csr"))).status == 200);
    CHECK(ca.signed_count() == 2);
}

TEST_CASE("scripts/enroll-device.sh: enrolls once, is idempotent, and its exit codes say what to do",
          "[integration][bridge][script]") {
    stack s(broker_mode::deny_list);
    auto& [redis, bridge, broker_ptr, dir] = s;
    broker& b = *broker_ptr;
    const std::string script = std::string(DEVICEGATE_SOURCE_DIR) + "/scripts/enroll-device.sh";
    auto run = [&](const std::string& id, const std::string& token, const fs::path& out, const std::string& api,
                   const std::string& extra = "") {
        return sh("DEVICEGATE_ENROLL_TOKEN='" + token + "' " + script + " --api " + api + " --id " + id + " --out " +
                  out.string() + " --cacert " + pki("root.crt") + " " + extra);
    };

    auto first = run("dev-sh", token_for(redis, "dev-sh"), dir / "certs", bridge.url(), "--wireguard");
    INFO(first.out);
    REQUIRE(first.exit_code == 0);
    for (const char* f : {"device.key", "device.crt", "ca-chain.crt", "wg0.conf", "enrolled"}) CHECK(fs::exists(dir / "certs" / f));
    CHECK((fs::status(dir / "certs" / "device.key").permissions() & fs::perms::group_read) == fs::perms::none);
    // The WireGuard private key stayed on the device; the config carries it locally.
    CHECK_THAT(slurp(dir / "certs" / "wg0.conf"), Catch::Contains("PrivateKey = " + slurp(dir / "certs" / "wg.key").substr(0, 44)));
    client dev("dev-sh", (dir / "certs" / "device.crt").string(), (dir / "certs" / "device.key").string());
    CHECK(dev.connect(b.port()) == 0);

    // Idempotent: the marker skips everything (the used token would be refused otherwise).
    auto second = run("dev-sh", "dgt_used", dir / "certs", bridge.url());
    CHECK(second.exit_code == 0);
    CHECK_THAT(second.out, Catch::Contains("already enrolled"));

    CHECK(run("dev-sh2", "dgt_unknown", dir / "c2", bridge.url()).exit_code == 77);
    CHECK_FALSE(fs::exists(dir / "c2" / "enrolled"));
    CHECK(run("dev-sh2", "dgt_unknown", dir / "c3", "https://localhost:1").exit_code == 69);
    CHECK(run("bad/id", "t", dir / "c4", bridge.url()).exit_code == 64);
    CHECK(run("dev-sh3", token_for(redis, "dev-other"), dir / "c5", bridge.url()).exit_code == 77);  // token of another id
    CHECK(bridge.log().find("dgt_") == std::string::npos);
}

namespace {

http_result enroll_with_api_key(const bridge_process& bridge, const std::string& id, const std::string& data) {
    return curl(bridge.url() + "/devices/" + id + "/enroll",
                "-X POST -H 'Content-Type: application/json' -H 'X-Api-Key: " + api_key + "' --data-binary '" + data + "'");
}

/// The CRLNumber of the CRL the bridge serves now.
long long served_crl_number(const bridge_process& bridge, const fs::path& dir) {
    const fs::path file = dir / ("crl-" + std::to_string(free_port()) + ".der");
    write_text(file, curl(bridge.crl_url(), "").body);
    const auto out = sh("openssl crl -inform DER -noout -crlnumber -in " + file.string()).out;  // crlNumber=0x...
    const auto x = out.find("0x");
    REQUIRE(x != std::string::npos);
    return std::stoll(out.substr(x + 2), nullptr, 16);
}

/// {"csr_pem", "wireguard_public_key"} in a file, for curl -d @file.
std::string body_with_wireguard(const fs::path& dir, const std::string& name, const std::string& wg_public_key) {
    const fs::path p = dir / (name + "-wg.json");
    write_text(p, json{{"csr_pem", slurp(dir / (name + ".csr"))}, {"wireguard_public_key", wg_public_key}}.dump());
    return "@" + p.string();
}

/// Sub-CA A (its name and key) valid from `not_before` to `not_after`, signed by the test ICA.
std::string subca_a_valid(const fs::path& dir, std::time_t not_before, std::time_t not_after) {
    auto cert = devicegate::parse_certificates(devicegate::read_file(pki("subca-a.crt"), 1 << 20), "subca-a");
    auto ica_key = devicegate::bridge::read_private_key(pki("ica.key"));
    const fs::path path = dir / ("subca-a-" + std::to_string(not_after) + ".crt");
    write_text(path, devicegate::test::cert_pem(
                         devicegate::test::with_validity(cert.at(0).get(), ica_key.get(), not_before, not_after).get()));
    return path.string();
}

}  // namespace

TEST_CASE("the embedded CA's CRL number keeps increasing across a bridge restart; brokers on crl_url take the next CRL",
          "[integration][bridge][crl]") {
    stack s(broker_mode::crl_url);
    auto& [redis, bridge, broker_ptr, dir] = s;
    broker& b = *broker_ptr;
    // A burst: 30 certificates of one device revoked in one request number 30 CRLs, ahead of the clock.
    key_and_csr(dir, "burst", "dev-burst");
    const std::string burst = body_file(dir, "burst", slurp(dir / "burst.csr"));
    for (int i = 0; i < 30; ++i) REQUIRE(enroll_with_api_key(bridge, "dev-burst", burst).status == 200);
    REQUIRE(revoke(bridge, "dev-burst").j()["revoked_serials"].size() == 30);
    const long long before = served_crl_number(bridge, dir);
    CHECK(before > static_cast<long long>(std::time(nullptr)));
    REQUIRE(b.wait_for_log("crl loaded url=" + bridge.crl_url() + " tenant Sub-CA CRL with 30 entries"));

    bridge.stop();
    REQUIRE(bridge.start());
    CHECK(served_crl_number(bridge, dir) > before);
    // A device revoked after the restart: off the deny-list, the broker's CRL still refuses it.
    enroll_device(bridge, redis, dir, "dev-late");
    REQUIRE(revoke(bridge, "dev-late").status == 200);
    CHECK(b.wait_for_log("crl loaded url=" + bridge.crl_url() + " tenant Sub-CA CRL with 31 entries"));
    CHECK(ctl({"unrevoke", "dev-late"}, redis.url()).exit_code == 0);
    CHECK(eventually([&] {
        client late("dev-late", (dir / "dev-late.crt").string(), (dir / "dev-late.key").string());
        return late.connect(b.port()) == not_authorized && b.log_contains("devicegate: deny client=dev-late reason=revoked_crl");
    }, 10s));
    CHECK_FALSE(b.log_contains("rollback"));
}

TEST_CASE("a retryable enrollment failure keeps the token: pool exhausted (503), pool widened, the same token enrolls",
          "[integration][bridge][token]") {
    stack s(broker_mode::none, {.extra = {{"wg_pool", "10.80.0.0/30"}}});  // one device address
    auto& [redis, bridge, broker_ptr, dir] = s;
    enroll_device(bridge, redis, dir, "dev-a");
    const std::string token = token_for(redis, "dev-b", "2h");
    key_and_csr(dir, "dev-b", "dev-b");
    const std::string body = body_file(dir, "dev-b", slurp(dir / "dev-b.csr"));
    auto full = enroll(bridge, "dev-b", token, body);
    INFO(full.body);
    CHECK(full.status == 503);
    CHECK(full.j()["error"] == "wireguard_pool_exhausted");
    CHECK_THAT(full.j()["message"].get<std::string>(), Catch::Contains("the enrollment token remains valid for a retry"));
    CHECK(bridge.wait_for_log("op=enroll device=dev-b source=127.0.0.1 outcome=token_kept"));
    // Put back with the lifetime it had left, not a fresh one.
    const std::string key = devicegate::bridge::token_key(devicegate::redis_model{}, token);
    const long long left = redis.integer({"PTTL", key});
    CHECK(left > 7'100'000);
    CHECK(left <= 7'200'000);
    CHECK(redis.command({"GET", key}) == "dev-b");

    bridge.set("wg_pool", "10.80.0.0/29");
    bridge.stop();
    REQUIRE(bridge.start());
    auto r = enroll(bridge, "dev-b", token, body);
    CHECK(r.status == 200);
    CHECK_THAT(r.j()["wireguard_config"].get<std::string>(), Catch::Contains("Address = 10.80.0.3/32"));
    auto again = enroll(bridge, "dev-b", token, body);
    CHECK(again.status == 401);
    CHECK(again.j()["error"] == "token_unknown_used_or_expired");
    CHECK(redis.integer({"EXISTS", key}) == 0);
}

TEST_CASE("one token, concurrent enrollments: at most one certificate, also when a failure puts the token back",
          "[integration][bridge][token]") {
    stack s(broker_mode::none, {.extra = {{"wg_pool", "10.80.0.0/29"}}});  // five device addresses
    auto& [redis, bridge, broker_ptr, dir] = s;
    for (int round = 0; round < 4; ++round) {
        const std::string id = "dev-c" + std::to_string(round);
        const std::string token = token_for(redis, id);
        key_and_csr(dir, id, id);
        const std::string body = body_file(dir, id, slurp(dir / (id + ".csr")));
        std::vector<std::future<http_result>> calls;
        for (int i = 0; i < 4; ++i) calls.push_back(std::async(std::launch::async, [&] { return enroll(bridge, id, token, body); }));
        int ok = 0, unknown = 0;
        for (auto& c : calls) {
            const auto r = c.get();
            if (r.status == 200) ++ok;
            if (r.status == 401) ++unknown;
        }
        INFO("round " << round);
        CHECK(ok == 1);
        CHECK(unknown == 3);
    }
    // The pool is exhausted now for a sixth device: the token comes back on each failure, and
    // concurrent retries still sign nothing twice.
    enroll_device(bridge, redis, dir, "dev-c4");
    const std::string token = token_for(redis, "dev-c5");
    key_and_csr(dir, "dev-c5", "dev-c5");
    const std::string body = body_file(dir, "dev-c5", slurp(dir / "dev-c5.csr"));
    std::vector<std::future<http_result>> calls;
    for (int i = 0; i < 4; ++i) calls.push_back(std::async(std::launch::async, [&] { return enroll(bridge, "dev-c5", token, body); }));
    for (auto& c : calls) CHECK(c.get().status != 200);
    CHECK(redis.command({"GET", devicegate::bridge::token_key(devicegate::redis_model{}, token)}) == "dev-c5");
    CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == 5);
}

TEST_CASE("a CSR with an explicit-parameter P-256 key is refused by name; the token stays usable",
          "[integration][bridge][csr]") {
    stack s;
    auto& [redis, bridge, broker_ptr, dir] = s;
    const std::string token = token_for(redis, "dev-e");
    REQUIRE(sh("openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out " + (dir / "expl.key").string())
                .exit_code == 0);
    REQUIRE(sh("openssl req -new -key " + (dir / "expl.key").string() + " -subj /CN=dev-e -out " + (dir / "expl.csr").string())
                .exit_code == 0);
    auto r = enroll(bridge, "dev-e", token, body_file(dir, "expl", slurp(dir / "expl.csr")));
    INFO(r.body);
    CHECK(r.status == 400);
    CHECK(r.j()["error"] == "csr_key_explicit_parameters");
    CHECK_THAT(r.j()["message"].get<std::string>(), Catch::Contains("explicit curve parameters"));
    CHECK(bridge.wait_for_log("op=enroll device=dev-e source=127.0.0.1 outcome=csr_key_explicit_parameters"));
    CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == 0);
    key_and_csr(dir, "dev-e", "dev-e");
    CHECK(enroll(bridge, "dev-e", token, body_file(dir, "dev-e", slurp(dir / "dev-e.csr"))).status == 200);
}

TEST_CASE("an expired or not yet valid Sub-CA stops the bridge at start, naming the file and the date",
          "[integration][bridge][validity]") {
    redis_server redis;
    REQUIRE(redis.start());
    const std::time_t now = std::time(nullptr);
    const fs::path dir = test_dir();
    SECTION("expired") {
        const std::string expired = subca_a_valid(dir, now - 7 * 86400, now - 3600);
        bridge_process bridge(redis, {.extra = {{"sub_ca_file", expired}}});
        CHECK_FALSE(bridge.start());
        CHECK(bridge.exit_status() == 1);
        CHECK_THAT(bridge.log(), Catch::Contains(expired + ": the CA certificate expired at ") && Catch::Contains("(notAfter; now "));
    }
    SECTION("not yet valid") {
        const std::string future = subca_a_valid(dir, now + 86400, now + 7 * 86400);
        bridge_process bridge(redis, {.extra = {{"sub_ca_file", future}}});
        CHECK_FALSE(bridge.start());
        CHECK(bridge.exit_status() == 1);
        CHECK_THAT(bridge.log(), Catch::Contains(future + ": the CA certificate is not valid before "));
    }
}

TEST_CASE("a Sub-CA about to expire signs nothing: 503 ca_expired, the token kept, nothing enqueued",
          "[integration][bridge][validity]") {
    const std::time_t now = std::time(nullptr);
    const std::string expiring = subca_a_valid(test_dir(), now - 86400, now + 1800);  // 30 minutes left
    auto expect_refused = [&](stack& s) {
        auto& [redis, bridge, broker_ptr, dir] = s;
        CHECK(bridge.log().find("refused (503 ca_expired) until it is replaced") != std::string::npos);  // said at start
        const std::string token = token_for(redis, "dev-x");
        key_and_csr(dir, "dev-x", "dev-x");
        auto r = enroll(bridge, "dev-x", token, body_file(dir, "dev-x", slurp(dir / "dev-x.csr")));
        INFO(r.body);
        CHECK(r.status == 503);
        CHECK(r.j()["error"] == "ca_expired");
        CHECK_THAT(r.j()["message"].get<std::string>(), Catch::Contains("the enrollment token remains valid"));
        CHECK(bridge.wait_for_log("less than 3600 s from now: replace it"));
        CHECK(bridge.log().find(expiring + ": the CA certificate expires at ") != std::string::npos);
        CHECK(redis.integer({"XLEN", "devicegate:jobs"}) == 0);
        CHECK(redis.integer({"HLEN", "devicegate:wg:slot"}) == 0);  // no address taken either
        CHECK(redis.integer({"EXISTS", devicegate::bridge::token_key(devicegate::redis_model{}, token)}) == 1);
    };
    SECTION("embedded CA") {
        stack s(broker_mode::none, {.extra = {{"sub_ca_file", expiring}}});
        expect_refused(s);
    }
    SECTION("step-ca: the bridge does not ask it") {
        stepca_signer_setup setup;
        stack s(broker_mode::none, setup.options({{"sub_ca_file", expiring}}));
        expect_refused(s);
        CHECK(setup.ca.signed_count() == 0);
    }
}

TEST_CASE("a WireGuard public key registered to another device is refused with 409; the owner keeps and changes it",
          "[integration][bridge][wireguard]") {
    stack s;
    auto& [redis, bridge, broker_ptr, dir] = s;
    const auto victim_key = devicegate::bridge::generate_wireguard_keypair().public_key;
    // A peer recorded before the owner index existed counts too.
    const auto legacy_key = devicegate::bridge::generate_wireguard_keypair().public_key;
    redis.command({"HSET", "devicegate:wg:peers", "dev-legacy",
                   json{{"address", "10.80.0.200"}, {"public_key", legacy_key}}.dump()});
    for (const char* id : {"dev-victim", "dev-attacker", "dev-next"}) key_and_csr(dir, id, id);

    REQUIRE(enroll(bridge, "dev-victim", token_for(redis, "dev-victim"), body_with_wireguard(dir, "dev-victim", victim_key)).status == 200);
    const std::string token = token_for(redis, "dev-attacker");
    for (const auto& taken : {victim_key, legacy_key}) {
        auto r = enroll(bridge, "dev-attacker", token, body_with_wireguard(dir, "dev-attacker", taken));
        INFO(r.body);
        CHECK(r.status == 409);
        CHECK(r.j()["error"] == "wireguard_key_in_use");
        CHECK_THAT(r.j()["message"].get<std::string>(),
                   Catch::Contains("registered to another device") && !Catch::Contains("dev-victim") && !Catch::Contains("dev-legacy"));
    }
    CHECK(bridge.wait_for_log("device=dev-attacker source=127.0.0.1 outcome=wireguard_key_in_use"));
    CHECK(bridge.wait_for_log("(device dev-victim)"));
    // Its own key, with the same token (nothing was signed).
    const auto own = devicegate::bridge::generate_wireguard_keypair().public_key;
    CHECK(enroll(bridge, "dev-attacker", token, body_with_wireguard(dir, "dev-attacker", own)).status == 200);
    // The owner re-enrolls with its key, then moves to a new one: the old key is free again.
    CHECK(enroll(bridge, "dev-victim", token_for(redis, "dev-victim"), body_with_wireguard(dir, "dev-victim", victim_key)).status == 200);
    const auto moved = devicegate::bridge::generate_wireguard_keypair().public_key;
    CHECK(enroll(bridge, "dev-victim", token_for(redis, "dev-victim"), body_with_wireguard(dir, "dev-victim", moved)).status == 200);
    CHECK(enroll(bridge, "dev-next", token_for(redis, "dev-next"), body_with_wireguard(dir, "dev-next", victim_key)).status == 200);

    std::ostringstream out, err;
    REQUIRE(devicegate::ctl::run({"--redis", redis.url(), "wg-peers"}, out, err, "", "") == 0);
    const std::string peers = out.str();
    for (const auto& k : {victim_key, legacy_key, own, moved}) {
        INFO(k);
        CHECK(peers.find("PublicKey = " + k) != std::string::npos);
        CHECK(peers.find("PublicKey = " + k) == peers.rfind("PublicKey = " + k));
    }
    CHECK_THAT(peers, Catch::Contains("# dev-next\nPublicKey = " + victim_key) && Catch::Contains("# dev-victim\nPublicKey = " + moved));
}

TEST_CASE("a second bridge on the port of a running one refuses to start", "[integration][bridge]") {
    // cpp-httplib's default SO_REUSEPORT let the second bind succeed, and the kernel spread
    // requests over two processes.
    redis_server redis;
    REQUIRE(redis.start());
    bridge_process bridge(redis);
    REQUIRE(bridge.start());
    const auto [rc, out] = bridge.run_twin();
    CHECK(rc == 1);
    CHECK_THAT(out, Catch::Contains("listen: cannot bind 127.0.0.1:"));
}
