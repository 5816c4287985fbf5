#include "devicegate/gate.hpp"

#include "cert_factory.hpp"
#include "eventually.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>

using namespace devicegate;
using namespace devicegate::test;
using namespace std::chrono_literals;

namespace {

option_list base_options(const std::string& crl = pki("subca-a.crl.pem")) {
    return {{"tenant_ca_file", pki("subca-a.crt")},
            {"ica_file", pki("ica.crt")},
            {"root_ca_file", pki("root.crt")},
            {"crl_file", crl},
            {"listener_check", "off"}};
}

struct fixture {
    std::vector<std::string> lines;
    temp_dir state;  // the gate's state_dir (persisted CRLs), not the system's /var/lib/mosquitto
    gate g;
    int client_a = 0, client_b = 0;  // stand-ins for mosquitto's client handles

    explicit fixture(option_list extra = {}, option_list base = base_options())
        : g(with(with(std::move(base), {{"state_dir", state.path().string()}}), std::move(extra)), "",
            [this](log_level, std::string_view line) {
              lines.emplace_back(line);
          }) {}
    static option_list with(option_list base, option_list extra) {
        base.insert(base.end(), extra.begin(), extra.end());
        return base;
    }
    admission connect(const void* client, const std::string& device, const std::string& client_id) {
        auto cert = load_cert(device_cert(device));
        return connect(client, cert.get(), client_id);
    }
    admission connect(const void* client, X509* cert, const std::string& client_id) {
        admission a = g.admit(cert, client_id, std::time(nullptr));
        g.settle(client, cert, a, client_id.c_str(), "127.0.0.1");
        return a;
    }
    std::map<std::string, std::string> stats() {
        std::map<std::string, std::string> out;
        for (auto& [topic, value] : g.stats(std::time(nullptr))) out[topic] = value;
        return out;
    }
    bool logged(const std::string& text) const {
        return std::any_of(lines.begin(), lines.end(), [&](const auto& l) { return l.find(text) != std::string::npos; });
    }
};

const std::string sys = "$SYS/broker/devicegate/";

// dev-001 and dev-002 admitted, with a CRL file the test can replace (polled every 100 ms).
struct crl_fixture {
    temp_dir dir;
    std::string crl = dir.file("subca-a.crl");
    fixture f{option_list{{"crl_poll_interval", "100ms"}}, base_options(written(crl))};

    crl_fixture() {
        f.connect(&f.client_a, "dev-001", "dev-001");
        f.connect(&f.client_b, "dev-002", "dev-002");
    }
    static const std::string& written(const std::string& path) {
        write_file(path, read_file(pki("subca-a.crl.pem"), max_crl_file_bytes));
        return path;
    }
};

}  // namespace

TEST_CASE("gate: admits a device of this tenant, refuses others with their reason, and counts both") {
    fixture f;
    auto ok = f.connect(&f.client_a, "dev-001", "dev-001");
    CHECK(ok.admitted());
    CHECK(ok.verdict.device_id == "dev-001");
    auto foreign = f.connect(&f.client_b, "tenant-b-dev", "tenant-b-dev");
    CHECK(foreign.verdict.why == reason::wrong_issuer);
    CHECK_FALSE(foreign.job);
    auto mismatch = f.connect(&f.client_b, "dev-003", "someone-else");
    CHECK(mismatch.verdict.why == reason::client_id_mismatch);
    CHECK(f.logged("devicegate: allow client=dev-001"));
    CHECK(f.logged("devicegate: deny client=tenant-b-dev reason=wrong_issuer"));
    auto s = f.stats();
    CHECK(s[sys + "admits"] == "1");
    CHECK(s[sys + "denies/wrong_issuer"] == "1");
    CHECK(s[sys + "denies/client_id_mismatch"] == "1");
    CHECK(s[sys + "sessions"] == "1");
}

TEST_CASE("gate: a refusal by the adapter after the decision is counted and logged as a denial") {
    fixture f;
    auto cert = load_cert(device_cert("dev-001"));
    admission a = f.g.admit(cert.get(), "dev-001", std::time(nullptr));
    REQUIRE(a.admitted());
    a.refuse(reason::internal_error, "mosquitto_set_username failed: out of memory");
    f.g.settle(&f.client_a, cert.get(), a, "dev-001", nullptr);
    auto s = f.stats();
    CHECK(s[sys + "admits"] == "0");
    CHECK(s[sys + "sessions"] == "0");
    CHECK(s[sys + "denies/internal_error"] == "1");
    CHECK(f.logged("reason=internal_error serial="));
    CHECK(f.logged("address=- detail=\"mosquitto_set_username failed: out of memory\""));
}

TEST_CASE("gate: the topic rules apply to admitted devices only") {
    fixture f;
    f.connect(&f.client_a, "dev-001", "dev-001");
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-001/telemetry", acl_action::publish) == reason::ok);
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-002/telemetry", acl_action::publish) == reason::acl_denied);
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-001/cmd", acl_action::subscribe) == reason::ok);
    // Another connection with the same client id was never admitted by the gate.
    CHECK(f.g.check_acl(&f.client_b, "dev-001", "devices/dev-001/telemetry", acl_action::publish) ==
          reason::not_authenticated);
    CHECK(f.g.check_acl(&f.client_b, nullptr, "x", acl_action::receive) == reason::not_authenticated);
    // mosquitto checks the will after MOSQ_EVT_DISCONNECT: the identity is still there...
    f.g.disconnected(&f.client_a, "dev-001");
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-001/status", acl_action::publish) == reason::ok);
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-002/status", acl_action::publish) == reason::acl_denied);
    // ...until the next tick, for a session that cannot outlive its connection.
    f.g.tick(std::chrono::steady_clock::now());
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-001/telemetry", acl_action::publish) ==
          reason::not_authenticated);
    auto s = f.stats();
    CHECK(s[sys + "denies/acl_denied"] == "2");
    CHECK(s[sys + "denies/not_authenticated"] == "3");
    CHECK(s[sys + "sessions"] == "0");
    CHECK(f.logged("reason=acl_denied access=publish topic=\"devices/dev-002/telemetry\""));
}

TEST_CASE("gate: an offline persistent session keeps its identity and re-checks revocation") {
    crl_fixture cf;
    fixture& f = cf.f;
    const std::string& crl = cf.crl;
    f.g.disconnected(&f.client_a, "dev-001", true);
    f.g.disconnected(&f.client_b, "dev-002", true);
    f.g.tick(std::chrono::steady_clock::now());
    // Queued messages for the offline sessions: allowed by their own rules.
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-001/inbox", acl_action::receive) == reason::ok);
    CHECK(f.g.check_acl(&f.client_b, "dev-002", "devices/dev-002/inbox", acl_action::receive) == reason::ok);
    CHECK(f.stats()[sys + "sessions_offline"] == "2");
    // dev-002 is revoked while offline: nothing more is queued for it, and it is never kicked.
    f.g.start();
    write_file(crl, read_file(pki("subca-a-revokes-dev-002.crl.pem"), max_crl_file_bytes));
    REQUIRE(eventually([&] {
        return f.g.check_acl(&f.client_b, "dev-002", "devices/dev-002/inbox", acl_action::receive) ==
               reason::revoked_crl;
    }));
    CHECK(f.g.tick(std::chrono::steady_clock::now()).kicks.empty());
    CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/dev-001/inbox", acl_action::receive) == reason::ok);
    CHECK(f.logged("deny client=dev-002 reason=revoked_crl access=receive topic=\"devices/dev-002/inbox\" session=offline"));
    // A late DISCONNECT of a taken-over connection does not touch the new session.
    int newer = 0;
    f.connect(&newer, "dev-001", "dev-001");
    f.g.disconnected(&f.client_a, "dev-001", true);
    CHECK(f.stats()[sys + "sessions"] == "1");
    f.g.stop();
}

TEST_CASE("gate: SIGHUP re-authentication keeps offline sessions until the next tick") {
    fixture f;
    int certificate = 0;
    CHECK_FALSE(f.g.keeps_offline_session(nullptr));  // no reload: a client without certificate is refused
    f.g.reload();
    CHECK_FALSE(f.g.keeps_offline_session(&certificate));  // online clients are re-checked in full
    CHECK(f.g.keeps_offline_session(nullptr));
    f.g.tick(std::chrono::steady_clock::now());
    CHECK(f.logged("devicegate: reload: kept 1 offline sessions"));
    CHECK_FALSE(f.g.keeps_offline_session(nullptr));
}

TEST_CASE("gate: deny lines are rate-limited per client, counted exactly, and can disconnect") {
    fixture f({{"deny_log_burst", "3"}, {"deny_log_interval", "10s"}, {"deny_disconnect_after", "50/10s"}});
    f.connect(&f.client_a, "dev-001", "dev-001");
    f.connect(&f.client_b, "dev-002", "dev-002");
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 40; ++i) {
        CHECK(f.g.check_acl(&f.client_a, "dev-001", "devices/x/y", acl_action::publish, t0) == reason::acl_denied);
    }
    CHECK(f.g.check_acl(&f.client_b, "dev-002", "devices/x/z", acl_action::publish, t0) == reason::acl_denied);
    auto count = [&](const std::string& text) {
        return std::count_if(f.lines.begin(), f.lines.end(), [&](auto& l) { return l.find(text) != std::string::npos; });
    };
    CHECK(count("deny client=dev-001 reason=acl_denied") == 3);
    CHECK(count("deny client=dev-002 reason=acl_denied") == 1);  // another client has its own budget
    CHECK(f.stats()[sys + "denies/acl_denied"] == "41");
    CHECK(f.g.tick(t0 + 1s).kicks.empty());
    CHECK(count("deny_summary") == 0);
    // The window ends while the client is quiet: one summary line on tick.
    f.g.tick(t0 + 11s);
    CHECK(count("deny_summary client=dev-001 suppressed=37 interval=10s last_topic=\"devices/x/y\"") == 1);
    // 50 denials within 10 s: a kick on the next tick, never inside the ACL check.
    const auto t1 = t0 + 12s;
    for (int i = 0; i < 60; ++i) f.g.check_acl(&f.client_a, "dev-001", "devices/x/y", acl_action::publish, t1);
    CHECK(count("kick client=dev-001 reason=too_many_denials count=50 interval=10s") == 1);
    auto kicks = f.g.tick(t1).kicks;
    REQUIRE(kicks.size() == 1);
    CHECK(kicks[0].client_id == "dev-001");
    CHECK(f.g.tick(t1).kicks.empty());
}

TEST_CASE("gate: a first-connect job is planned once per certificate, only with Redis and jobs on") {
    temp_dir dir;
    // Redis on an unused port: the gate is never started here, so nothing connects.
    fixture f({{"redis_url", "redis://127.0.0.1:1"}, {"state_dir", dir.path().string()}, {"broker_id", "broker-7"}});
    auto cert = load_cert(device_cert("dev-001"));
    auto first = f.connect(&f.client_a, cert.get(), "dev-001");
    REQUIRE(first.job);
    CHECK(first.job->device_id == "dev-001");
    CHECK(first.job->broker_id == "broker-7");
    CHECK(first.job->serial_hex == first.verdict.serial_hex);
    CHECK(first.job->fingerprint_sha256 == fingerprint_hex(certificate_sha256(cert.get())));
    CHECK(first.job->fingerprint_sha256.find_first_of("ABCDEF") == std::string::npos);
    // The broker thread hands over the DER; the job producer's thread writes the PEM from it.
    CHECK(first.job->certificate_pem.empty());
    auto handed_over = parse_certificates(pem_from_der(first.job->certificate_der), "job");
    REQUIRE(handed_over.size() == 1);
    CHECK(X509_cmp(handed_over[0].get(), cert.get()) == 0);
    f.g.disconnected(&f.client_a, "dev-001");
    CHECK_FALSE(f.connect(&f.client_a, cert.get(), "dev-001").job);  // reconnect: nothing new
    auto renewed = f.connect(&f.client_b, "dev-001-renewed", "dev-001");
    CHECK(renewed.job);  // a new certificate of the same device is a candidate again
    CHECK(f.g.state_dir() == dir.path().string());
    CHECK(f.g.broker_id() == "broker-7");

    fixture off({{"redis_url", "redis://127.0.0.1:1"}, {"state_dir", dir.path().string()}, {"first_connect_jobs", "off"}});
    CHECK_FALSE(off.connect(&off.client_a, "dev-001", "dev-001").job);
    fixture no_redis;
    CHECK_FALSE(no_redis.connect(&no_redis.client_a, "dev-001", "dev-001").job);
}

TEST_CASE("gate: CRL Distribution Points are learned once each, at most 64, and only when enabled") {
    temp_dir dir;
    cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    fixture f(option_list{{"crl_distribution_points", "on"}});
    std::size_t learned = 0;
    for (int i = 0; i < 70; ++i) {
        const std::string id = "cdp-" + std::to_string(i);
        auto cert = factory.issue(dir.path(), id, "http://127.0.0.1:1/crl-" + std::to_string(i));
        auto a = f.connect(&f.client_a, cert.get(), id);
        REQUIRE(a.admitted());
        learned += a.learned_crl_urls.size();
        if (i < static_cast<int>(max_learned_crl_urls)) CHECK(a.learned_crl_urls.size() == 1);
        else CHECK(a.learned_crl_urls.empty());
    }
    CHECK(learned == max_learned_crl_urls);
    // The same URL again is nothing new; a verify-cache hit does not even look.
    auto again = factory.issue(dir.path(), "cdp-again", "http://127.0.0.1:1/crl-0");
    CHECK(f.connect(&f.client_b, again.get(), "cdp-again").learned_crl_urls.empty());

    fixture off;
    auto cert = factory.issue(dir.path(), "cdp-off", "http://127.0.0.1:1/crl-off");
    CHECK(off.connect(&off.client_a, cert.get(), "cdp-off").learned_crl_urls.empty());
}

TEST_CASE("gate: kick requests resolve to the client ids holding the session") {
    session_registry sessions;
    int a = 0, b = 0, c = 0;
    auto serial = [](unsigned char v) {
        serial_key k;
        k.bytes[0] = 1;
        k.bytes[1] = v;
        return k;
    };
    sessions.admit(&a, "dev-a", serial(1));
    sessions.admit(&b, "dev-b", serial(2));
    sessions.admit(&c, "dev-c", serial(3));
    auto ids = [](const std::vector<client_kick>& kicks) {
        std::vector<std::string> out;
        for (const auto& k : kicks) out.push_back(k.client_id);
        std::sort(out.begin(), out.end());
        return out;
    };

    kick_request by_serial;
    by_serial.serials = {serial(2), serial(9)};  // 9: nobody holds it
    by_serial.why = reason::revoked_crl;
    auto kicks = resolve_kicks(sessions, {by_serial});
    REQUIRE(kicks.size() == 1);
    CHECK(kicks[0].client_id == "dev-b");
    CHECK(kicks[0].why == reason::revoked_crl);

    kick_request by_id;
    by_id.device_ids = {"dev-c", "dev-gone", ""};
    by_id.why = reason::revoked_denylist;
    CHECK(ids(resolve_kicks(sessions, {by_id})) == std::vector<std::string>{"dev-c"});

    kick_request everyone;
    everyone.everyone = true;
    everyone.why = reason::ca_revoked;
    CHECK(ids(resolve_kicks(sessions, {everyone})) == std::vector<std::string>{"dev-a", "dev-b", "dev-c"});
    CHECK(ids(resolve_kicks(sessions, {by_serial, by_id})) == std::vector<std::string>{"dev-b", "dev-c"});
}

TEST_CASE("gate: a CRL that revokes a connected device yields its kick on the next tick") {
    crl_fixture cf;
    fixture& f = cf.f;
    const std::string& crl = cf.crl;
    f.g.start();
    write_file(crl, read_file(pki("subca-a-revokes-dev-002.crl.pem"), max_crl_file_bytes));
    f.g.reload();
    std::vector<client_kick> kicks;
    CHECK(eventually([&] {
        kicks = f.g.tick(std::chrono::steady_clock::now()).kicks;
        return !kicks.empty();
    }));
    f.g.stop();
    REQUIRE(kicks.size() == 1);
    CHECK(kicks[0].client_id == "dev-002");
    CHECK(kicks[0].why == reason::revoked_crl);
    CHECK(f.logged("devicegate: kick client=dev-002 reason=revoked_crl"));
    CHECK(f.stats()[sys + "kicks"] == "1");
}

TEST_CASE("gate: $SYS statistics every stats_interval, with CRL values") {
    fixture f;
    auto first = f.g.tick(std::chrono::steady_clock::now()).stats;
    REQUIRE_FALSE(first.empty());
    CHECK(f.g.tick(std::chrono::steady_clock::now()).stats.empty());  // not again within 10s
    CHECK_FALSE(f.g.tick(std::chrono::steady_clock::now() + 11s).stats.empty());
    std::map<std::string, std::string> s(first.begin(), first.end());
    for (const auto& [topic, value] : first) CHECK(topic.rfind(sys, 0) == 0);
    CHECK(s[sys + "admits"] == "0");
    CHECK(s[sys + "kicks"] == "0");
    CHECK(s[sys + "crl/chain_revoked"] == "0");
    CHECK(s[sys + "crl/rejected"] == "0");
    CHECK(s.count(sys + "crl/revoked_serials") == 1);
    CHECK(s.count(sys + "crl/age_seconds") == 1);
    CHECK(s.count(sys + "ocsp/cache") == 0);      // OCSP off
    CHECK(s.count(sys + "redis/link") == 0);      // Redis off
    CHECK(s.count(sys + "denies/ok") == 0);
    CHECK(s.count(sys + "denies/acl_denied") == 1);

    fixture quiet(option_list{{"stats_interval", "0s"}});
    CHECK(quiet.g.tick(std::chrono::steady_clock::now()).stats.empty());
}

TEST_CASE("gate: the startup line summarises the configuration") {
    fixture f({{"acl_pattern", "read a/%c"}, {"acl_pattern", "write b/%c/#"}, {"ocsp", "soft"}});
    CHECK(f.logged("devicegate: started tenant_ca=\""));
    CHECK(f.logged(" crl_files=1 crl_urls=0 acl=read:a/%c,write:b/%c/# redis=off first_connect_jobs=off ocsp=soft"));
    CHECK(acl_summary(default_acl_rules()) == "write:v1/devices/me/#,readwrite:devices/%c/#");
}

TEST_CASE("gate: state_dir and broker_id defaults") {
    temp_dir dir;
    plugin_config c;
    CHECK(default_state_dir(c, "") == "/var/lib/mosquitto");
    const std::string conf = dir.file("mosquitto.conf");
    write_file(conf, "persistence_location /srv/mqtt/state/\n");
    CHECK(default_state_dir(c, conf) == "/srv/mqtt/state");
    c.state_dir = "/etc/devicegate//";
    CHECK(default_state_dir(c, conf) == "/etc/devicegate");
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    CHECK(default_broker_id(c) == host);
    c.broker_id = "edge-1";
    CHECK(default_broker_id(c) == "edge-1");
}

TEST_CASE("log_word escapes what log_safe escapes, and spaces", "[log]") {
    CHECK(log_safe("a b\"c\n") == "a b\\\"c\\x0a");
    CHECK(log_word("a b\"c\n") == "a\\x20b\\\"c\\x0a");
    CHECK(log_word("dev-001") == "dev-001");
    CHECK(log_word(std::string(200, 'x'), 10) == std::string(10, 'x') + "...");
}
