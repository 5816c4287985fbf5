// OCSP through the real broker, against a real responder (`openssl ocsp` over the test PKI's
// Sub-CA database, signing with a delegated responder certificate).
#include "cert_factory.hpp"
#include "harness.hpp"
#include "http_server.hpp"
#include "devicegate/tenant_trust.hpp"
#include "ocsp_craft.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>

using namespace devicegate::itest;

namespace {
constexpr int not_authorized = 135;

// Starts `openssl ocsp` and waits for it to listen. Not by a TCP probe: it serves one
// connection at a time, and one that closes without a request wedges it.
// `openssl ocsp` cannot listen on port 0 and report it: when another process took the port
// ("Address already in use", then it exits), it is started again on a new one.
std::unique_ptr<process> start_responder(std::vector<std::string> args, const std::filesystem::path& log,
                                         int& port) {
    const auto port_arg = std::find(args.begin(), args.end(), "-port") + 1;
    for (int attempt = 1;; ++attempt) {
        *port_arg = std::to_string(port);
        const auto offset = log_size(log);
        auto proc = std::make_unique<process>(args, log);
        REQUIRE(eventually([&] {
            return log_since(log, offset).find("waiting for OCSP client connections") != std::string::npos ||
                   !proc->running();
        }));
        if (proc->running()) return proc;
        REQUIRE(log_since(log, offset).find("Address already in use") != std::string::npos);
        REQUIRE(attempt < port_attempts);
        drop_attempt_log(log, offset);
        port = free_port();
    }
}

struct responder {
    int port = free_port();
    std::filesystem::path log = test_dir() / "ocsp-responder.log";
    std::unique_ptr<process> proc;
    explicit responder(const std::string& signer = "ocsp-responder") {
        proc = start_responder({"openssl", "ocsp", "-index", pki("db/subca-a/index.txt"), "-port", "",
                                "-rsigner", pki("devices/" + signer + ".crt"), "-rkey",
                                pki("devices/" + signer + ".key"), "-CA", pki("subca-a.crt"), "-nmin", "10",
                                "-ignore_err"},
                               log, port);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

broker_options with_ocsp(const std::string& mode, const std::string& url) {
    return {.plugin_opts = {{"ocsp", mode}, {"ocsp_responder_url", url}}};
}

// Connects until the answer differs from `while_code` (the fetch runs in the background).
int connect_until_decided(const std::string& name, int port, int while_code, const std::string& cert = "") {
    int rc = while_code;
    eventually([&] { return (rc = device(name, "", cert)->connect(port)) != while_code; }, 10s);
    return rc;
}
}  // namespace

TEST_CASE("ocsp hard: refused until a good answer is cached, which the first attempt starts fetching",
          "[integration][ocsp]") {
    responder ocsp;
    broker b(with_ocsp("hard", ocsp.url()));
    REQUIRE(b.start());
    CHECK(device("dev-001")->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=ocsp_pending"));
    CHECK(connect_until_decided("dev-001", b.port(), not_authorized) == 0);
    CHECK(b.wait_for_log("devicegate: ocsp serial=" + serial_of("dev-001") + " status=good"));

    // dev-002 is revoked in the CA database but not on the CRL the broker loaded.
    CHECK(device("dev-002")->connect(b.port()) == not_authorized);
    CHECK(eventually([&] {
        device("dev-002")->connect(b.port());
        return b.log_contains("devicegate: deny client=dev-002 reason=revoked_ocsp");
    }, 10s));

    // A certificate the CA database does not know: unknown.
    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    auto dir = test_dir();
    factory.issue(dir, "dev-unlisted");
    client first("dev-unlisted", (dir / "dev-unlisted.crt").string(), (dir / "dev-unlisted.key").string());
    CHECK(first.connect(b.port()) == not_authorized);
    CHECK(eventually([&] {
        client c("dev-unlisted", (dir / "dev-unlisted.crt").string(), (dir / "dev-unlisted.key").string());
        c.connect(b.port());
        return b.log_contains("devicegate: deny client=dev-unlisted reason=ocsp_unknown");
    }, 10s));
}

TEST_CASE("ocsp hard: answers signed by an expired delegated responder are refused", "[integration][ocsp]") {
    responder ocsp("ocsp-expired");  // id-kp-OCSPSigning, issued by Sub-CA A, expired in 2021
    broker b(with_ocsp("hard", ocsp.url()));
    REQUIRE(b.start());
    CHECK(device("dev-001")->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: ocsp_failed serial=" + serial_of("dev-001"), 10s));
    CHECK(b.log_contains("cause=\"the responder certificate "));
    CHECK(b.log_contains("s ago"));  // "... expired <n>s ago"
    for (int i = 0; i < 3; ++i) {
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        std::this_thread::sleep_for(300ms);
    }
    CHECK_FALSE(b.log_contains("status=good"));
}

TEST_CASE("ocsp soft: admitted while no answer is cached, disconnected when it comes back revoked",
          "[integration][ocsp]") {
    responder ocsp;
    broker b(with_ocsp("soft", ocsp.url()));
    REQUIRE(b.start());
    auto good = device("dev-001");
    auto revoked = device("dev-002");
    REQUIRE(good->connect(b.port()) == 0);
    REQUIRE(revoked->connect(b.port()) == 0);
    CHECK(revoked->wait_disconnected(10s));
    CHECK(b.wait_for_log("devicegate: kick client=dev-002 reason=revoked_ocsp"));
    CHECK(device("dev-002")->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-002 reason=revoked_ocsp"));
    CHECK(good->connected());

    // Unknown to the responder: admitted first (soft), refused once the answer is cached.
    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    auto dir = test_dir();
    factory.issue(dir, "dev-unlisted");
    client first("dev-unlisted", (dir / "dev-unlisted.crt").string(), (dir / "dev-unlisted.key").string());
    CHECK(first.connect(b.port()) == 0);
    CHECK(eventually([&] {
        client c("dev-unlisted", (dir / "dev-unlisted.crt").string(), (dir / "dev-unlisted.key").string());
        return c.connect(b.port()) == not_authorized &&
               b.log_contains("devicegate: deny client=dev-unlisted reason=ocsp_unknown");
    }, 10s));
}

TEST_CASE("ocsp: a responder that is down or answers garbage", "[integration][ocsp]") {
    SECTION("down, soft: devices are admitted, the failure is logged") {
        broker b(with_ocsp("soft", "http://127.0.0.1:" + std::to_string(free_port())));
        REQUIRE(b.start());
        CHECK(device("dev-001")->connect(b.port()) == 0);
        CHECK(b.wait_for_log("devicegate: ocsp_failed serial=" + serial_of("dev-001")));
        CHECK(b.log_contains("fetch failed"));
    }
    SECTION("down, hard: devices stay refused") {
        broker b(with_ocsp("hard", "http://127.0.0.1:" + std::to_string(free_port())));
        REQUIRE(b.start());
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        CHECK(b.wait_for_log("devicegate: ocsp_failed"));
        // After the failed fetch (logged): still refused, no answer to admit it on.
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=ocsp_pending"));
    }
    SECTION("untrustworthy answers, hard: refused, each cause logged") {
        devicegate::test::http_server server;
        broker b(with_ocsp("hard", server.url("/")));
        REQUIRE(b.start());
        auto trust = devicegate::tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
        auto leaf = devicegate::test::load_cert(pki("devices/dev-001.crt"));
        auto query = devicegate::make_ocsp_query(leaf.get(), trust->certificate(devicegate::ca_role::sub_ca), false);
        using devicegate::test::nonce_mode;
        const std::pair<devicegate::test::response_spec, std::string> cases[] = {
            {{.signer = "subca-b"}, "response signature or signer not trusted"},
            {{.signer = "ocsp-noeku"}, "response signature or signer not trusted"},
            {{.about = "dev-003"}, "not about the certificate asked for"},
            {{.this_update = std::time(nullptr) - 7200, .next_update = std::time(nullptr) - 3600}, "stale"},
            {{.nonce = nonce_mode::wrong}, "nonce mismatch"},
        };
        for (const auto& [spec, cause] : cases) {
            INFO(cause);
            server.set("/", {200, devicegate::test::craft(query, spec), "", "application/ocsp-response"});
            CHECK(eventually([&] {
                device("dev-001")->connect(b.port());
                return b.log_contains(cause);
            }, 15s));
        }
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        // A good answer, finally: admitted.
        server.set("/", {200, devicegate::test::craft(query, {}), "", "application/ocsp-response"});
        CHECK(connect_until_decided("dev-001", b.port(), not_authorized) == 0);
    }
    SECTION("garbage answers, hard: refused, cause logged") {
        devicegate::test::http_server server;
        server.set("/", {200, "this is not DER", "", "application/ocsp-response"});
        broker b(with_ocsp("hard", server.url("/")));
        REQUIRE(b.start());
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        CHECK(b.wait_for_log("cause=\"not an OCSP response"));
        CHECK(server.count("/") >= 1);
    }
}

namespace {
// A broker asking `server` (hard mode) about dev-001, and how to craft answers to its queries.
struct crafted_responder {
    devicegate::test::http_server server;
    std::shared_ptr<const devicegate::tenant_trust> trust =
        devicegate::tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    devicegate::x509_ptr leaf = devicegate::test::load_cert(pki("devices/dev-001.crt"));
    devicegate::ocsp_query query =
        devicegate::make_ocsp_query(leaf.get(), trust->certificate(devicegate::ca_role::sub_ca), false);
    void answer(const devicegate::test::response_spec& spec) {
        server.set("/", {200, devicegate::test::craft(query, spec), "", "application/ocsp-response"});
    }
};
}  // namespace

TEST_CASE("ocsp hard: a year-old good answer without nextUpdate (a replay) is refused by name; a fresh one is "
          "taken", "[integration][ocsp][ocsp_freshness]") {
    crafted_responder ocsp;
    const std::time_t now = std::time(nullptr);
    ocsp.answer({.this_update = now - 365 * 86400, .next_update = 0});
    broker b(with_ocsp("hard", ocsp.server.url("/")));
    REQUIRE(b.start());
    CHECK(device("dev-001")->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: ocsp_failed serial=" + serial_of("dev-001"), 10s));
    CHECK(b.log_contains("cause=\"stale: no nextUpdate, and thisUpdate was "));
    CHECK(b.log_contains("s ago (ocsp_max_ttl 3600s, clock_skew 60s)\""));
    // Asked again once the retry delay has passed: the same replay, still refused.
    CHECK(eventually([&] {
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        return ocsp.server.count("/") >= 2;
    }, 15s));
    CHECK(device("dev-001")->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-001 reason=ocsp_pending"));
    CHECK_FALSE(b.log_contains("status=good"));

    // What `openssl ocsp` without -nmin/-ndays sends: no nextUpdate, thisUpdate now.
    ocsp.answer({.this_update = std::time(nullptr), .next_update = 0});
    CHECK(connect_until_decided("dev-001", b.port(), not_authorized) == 0);
    CHECK(b.log_contains("devicegate: ocsp serial=" + serial_of("dev-001") + " status=good"));
}

TEST_CASE("ocsp hard: an older good answer never replaces a newer revoked one in the cache",
          "[integration][ocsp][ocsp_freshness]") {
    crafted_responder ocsp;
    const std::time_t now = std::time(nullptr);
    ocsp.answer({.status = V_OCSP_CERTSTATUS_REVOKED, .this_update = now - 10, .next_update = now + 3600});
    // Answers kept 1 s: the next connect after that asks the responder again.
    broker b({.plugin_opts = {{"ocsp", "hard"}, {"ocsp_responder_url", ocsp.server.url("/")}, {"ocsp_max_ttl", "1s"}}});
    REQUIRE(b.start());
    CHECK(eventually([&] {
        device("dev-001")->connect(b.port());
        return b.log_contains("devicegate: deny client=dev-001 reason=revoked_ocsp");
    }, 10s));

    // A replay of the answer from before the revocation.
    ocsp.answer({.this_update = now - 60, .next_update = now + 3600});
    CHECK(eventually([&] {
        CHECK(device("dev-001")->connect(b.port()) == not_authorized);
        return b.log_contains("cause=\"older than the answer held: thisUpdate " + std::to_string(now - 60) +
                              " (good) < " + std::to_string(now - 10) + " (revoked)\"");
    }, 15s));
    CHECK(device("dev-001")->connect(b.port()) == not_authorized);
    CHECK_FALSE(b.log_contains("status=good"));

    // A newer good answer (the certificate put back from hold) is taken.
    ocsp.answer({.this_update = std::time(nullptr), .next_update = std::time(nullptr) + 3600});
    CHECK(connect_until_decided("dev-001", b.port(), not_authorized) == 0);
}

namespace {
// An OCSP responder for the ICA, answering about the Sub-CAs (the test PKI's ICA database
// has Sub-CA A revoked; `sub_ca_valid` serves a copy in which it is not).
struct ica_responder {
    int port = free_port();
    std::filesystem::path dir = test_dir();
    std::unique_ptr<process> proc;
    explicit ica_responder(bool sub_ca_valid) {
        std::ifstream in(pki("db/ica/index.txt"));
        std::ofstream out(dir / "index.txt");
        std::string line;
        while (std::getline(in, line)) {
            if (sub_ca_valid && line.find("CN=Tenant A Sub-CA") != std::string::npos && line[0] == 'R') {
                // R <expiry> <revoked,reason> <serial> ... -> V <expiry> <empty> <serial> ...
                auto t1 = line.find('\t'), t2 = line.find('\t', t1 + 1), t3 = line.find('\t', t2 + 1);
                line = "V" + line.substr(t1, t2 - t1) + "\t" + line.substr(t3);
            }
            out << line << "\n";
        }
        out.close();
        proc = start_responder({"openssl", "ocsp", "-index", (dir / "index.txt").string(), "-port", "",
                                "-rsigner", pki("ica.crt"), "-rkey", pki("ica.key"), "-CA", pki("ica.crt"), "-nmin",
                                "10", "-ignore_err"},
                               dir / "ica-ocsp.log", port);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};
}  // namespace

TEST_CASE("ocsp_sub_ca: the ICA's responder saying the Sub-CA is revoked refuses and disconnects every device",
          "[integration][ocsp]") {
    responder devices;
    ica_responder ica(/*sub_ca_valid=*/false);
    broker b({.plugin_opts = {{"ocsp", "soft"}, {"ocsp_responder_url", devices.url()}, {"ocsp_sub_ca", "on"},
                              {"ocsp_sub_ca_responder_url", ica.url()}}});
    REQUIRE(b.start());
    auto dev = device("dev-001");
    int first = dev->connect(b.port());  // soft: admitted unless the Sub-CA answer is already in
    if (first == 0) CHECK(dev->wait_disconnected(10s));
    CHECK(b.wait_for_log("devicegate: ocsp says the tenant Sub-CA serial=" + serial_of("../subca-a") + " is revoked"));
    CHECK(device("dev-003")->connect(b.port()) == not_authorized);
    CHECK(b.wait_for_log("devicegate: deny client=dev-003 reason=ca_revoked"));
}

TEST_CASE("ocsp_sub_ca hard: devices get in once the Sub-CA and the device both have good answers",
          "[integration][ocsp]") {
    responder devices;
    ica_responder ica(/*sub_ca_valid=*/true);
    broker b({.plugin_opts = {{"ocsp", "hard"}, {"ocsp_responder_url", devices.url()}, {"ocsp_sub_ca", "on"},
                              {"ocsp_sub_ca_responder_url", ica.url()}}});
    REQUIRE(b.start());
    CHECK(connect_until_decided("dev-001", b.port(), not_authorized) == 0);
    CHECK(b.log_contains("devicegate: ocsp serial=" + serial_of("../subca-a") + " status=good"));
}

TEST_CASE("ocsp: a connected device's answer is refreshed ahead of its expiry", "[integration][ocsp]") {
    responder ocsp;
    // Answers are kept 1 s (ocsp_max_ttl) and refreshed 10 s ahead: every answer is already due,
    // so the fetcher refreshes it on each refresh scan (every refresh_ahead / 10 = 1 s).
    broker b({.plugin_opts = {{"ocsp", "soft"},
                              {"ocsp_responder_url", ocsp.url()},
                              {"ocsp_max_ttl", "1s"},
                              {"ocsp_refresh_ahead", "10s"}}});
    REQUIRE(b.start());
    auto dev = device("dev-001");
    REQUIRE(dev->connect(b.port()) == 0);
    auto requests = [&] {
        std::ifstream in(ocsp.log);
        std::string line;
        int n = 0;
        while (std::getline(in, line)) n += line.find("Received request") != std::string::npos;
        return n;
    };
    CHECK(eventually([&] { return requests() >= 3; }, 10s));  // one connect, several fetches
    dev.reset();                                               // disconnected: no more refreshes
    // Every request so far answered and cached (each logs a status line), after the disconnect.
    const std::string good = "devicegate: ocsp serial=" + serial_of("dev-001") + " status=good";
    auto answered = [&] {
        const std::string log = b.log();
        int n = 0;
        for (auto at = log.find(good); at != std::string::npos; at = log.find(good, at + 1)) ++n;
        return n;
    };
    REQUIRE(eventually([&] { return b.log_contains("Client dev-001 disconnected") && answered() == requests(); }));
    const int after = requests();
    // Proving that no refresh follows needs a bounded wait: 2.5 refresh scans (1 s apart).
    std::this_thread::sleep_for(2500ms);
    CHECK(requests() == after);
}
