// Issue 12: the edges of mosquitto 2.0.11 itself (docs/design-broker-edges.md): wills and
// offline messages (finding 2), SIGHUP with offline sessions (3), deny floods (4), service
// identities (6), and the error naming the user mosquitto runs as (7).
#include "cert_factory.hpp"
#include "harness.hpp"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <fstream>

using namespace devicegate::itest;

namespace {

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// mosquitto_sub (mosquitto-clients) as device `id`, MQTT v5, with its output in `log`.
std::unique_ptr<process> mosquitto_sub(int port, const std::string& id, const std::string& cert, const std::string& key,
                                       std::vector<std::string> args, const std::filesystem::path& log) {
    std::vector<std::string> argv{"mosquitto_sub", "-h", "localhost", "-p", std::to_string(port), "--cafile",
                                  pki("root.crt"), "--cert", cert, "--key", key, "-i", id, "-V", "mqttv5"};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<process>(argv, log);
}

std::unique_ptr<process> device_sub(int port, const std::string& name, std::vector<std::string> args,
                                    const std::filesystem::path& log) {
    return mosquitto_sub(port, name, pki("devices/" + name + ".crt"), pki("devices/" + name + ".key"), std::move(args),
                         log);
}

// Device topics own-topic only, plus what the test needs to watch or feed another device.
broker_options with_acl(std::vector<std::string> extra_rules) {
    broker_options o;
    o.plugin_opts.push_back({"acl_pattern", "readwrite devices/%c/#"});
    for (auto& rule : extra_rules) o.plugin_opts.push_back({"acl_pattern", std::move(rule)});
    return o;
}

// dev-003 subscribes to `will_topic`; dev-001 (mosquitto_sub) connects with a QoS 1 will on it,
// then its connection drops without DISCONNECT, so mosquitto must process the will. Returns dev-003.
std::unique_ptr<client> drop_with_will(const broker& b, const std::string& will_topic, const std::string& payload) {
    auto watcher = device("dev-003");
    REQUIRE(watcher->connect(b.port()) == 0);
    REQUIRE(watcher->subscribe(will_topic) == 1);
    auto sub = device_sub(b.port(), "dev-001",
                          {"-t", "devices/dev-001/cmd", "--will-topic", will_topic, "--will-payload", payload,
                           "--will-qos", "1"},
                          test_dir() / "sub.log");
    REQUIRE(b.wait_for_log("Sending SUBACK to dev-001"));
    sub->signal(SIGKILL);
    return watcher;
}

}  // namespace

TEST_CASE("finding 2: a device's will on its own topic is published", "[integration][broker_edges]") {
    broker b(with_acl({"read devices/+/status"}));
    REQUIRE(b.start());
    auto watcher = drop_with_will(b, "devices/dev-001/status", "offline");
    CHECK(watcher->wait_message("devices/dev-001/status", 5000ms) == "offline");
    CHECK_FALSE(b.log_contains("reason=not_authenticated"));
}

TEST_CASE("finding 2: a will on another device's topic is denied as acl_denied",
          "[integration][broker_edges]") {
    broker b(with_acl({}));
    REQUIRE(b.start());
    auto victim = drop_with_will(b, "devices/dev-003/status", "forged");
    CHECK(b.wait_for_log("deny client=dev-001 reason=acl_denied access=publish topic=\"devices/dev-003/status\""));
    CHECK_FALSE(victim->wait_message("devices/dev-003/status", 1000ms));
    CHECK_FALSE(b.log_contains("reason=not_authenticated"));
}

TEST_CASE("finding 2: QoS 1 messages for an offline persistent session are delivered when it reconnects",
          "[integration][broker_edges]") {
    broker b(with_acl({"write devices/+/inbox"}));
    REQUIRE(b.start());
    auto dir = test_dir();
    const std::vector<std::string> session{"-c", "-x", "300", "-q", "1", "-t", "devices/dev-001/inbox"};
    std::vector<std::string> subscribe_and_leave = session;
    subscribe_and_leave.push_back("-E");  // exit (normal DISCONNECT) once subscribed: the session stays
    auto first = device_sub(b.port(), "dev-001", subscribe_and_leave, dir / "first.log");
    REQUIRE(first->wait_exit(10000ms) == 0);

    auto sender = device("dev-003");
    REQUIRE(sender->connect(b.port()) == 0);
    CHECK(sender->publish("devices/dev-001/inbox", "queued-while-offline") == 0);  // 0: a subscriber matched

    std::vector<std::string> come_back = session;
    come_back.insert(come_back.end(), {"-C", "1", "-W", "10"});
    auto second = device_sub(b.port(), "dev-001", come_back, dir / "second.log");
    second->wait_exit(15000ms);
    CHECK(slurp(dir / "second.log").find("queued-while-offline") != std::string::npos);
    CHECK_FALSE(b.log_contains("reason=not_authenticated"));
}

TEST_CASE("finding 2: a device revoked while its persistent session is offline gets nothing, and the session expires",
          "[integration][broker_edges]") {
    auto dir = test_dir();
    auto crl = dir / "subca.crl";
    replace_file(crl, pki("subca-a.crl.pem"));
    broker_options o = with_acl({"write devices/+/inbox"});
    o.plugin_opts.push_back({"crl_poll_interval", "200ms"});
    o.crl_files = {crl.string()};
    broker b(o);
    REQUIRE(b.start());
    // A 6 s session expiry: mosquitto itself expires the session (the plugin never kicks an offline one).
    const std::vector<std::string> session{"-c", "-x", "6", "-q", "1", "-t", "devices/dev-002/inbox"};
    std::vector<std::string> subscribe_and_leave = session;
    subscribe_and_leave.push_back("-E");
    auto first = device_sub(b.port(), "dev-002", subscribe_and_leave, dir / "first.log");
    REQUIRE(first->wait_exit(10000ms) == 0);

    replace_file(crl, pki("subca-a-revokes-dev-002.crl.pem"));
    auto sender = device("dev-003");
    REQUIRE(sender->connect(b.port()) == 0);
    REQUIRE(eventually(
        [&] {
            sender->publish("devices/dev-002/inbox", "for-a-revoked-device");
            return b.log_contains("deny client=dev-002 reason=revoked_crl access=receive");
        },
        5000ms));
    CHECK(b.log_contains("topic=\"devices/dev-002/inbox\" session=offline"));
    CHECK_FALSE(b.log_contains("kick client=dev-002"));
    CHECK(b.wait_for_log("Expiring client dev-002", 15000ms));
    auto again = device("dev-002");
    CHECK(again->connect(b.port()) == 135);  // and it cannot come back to collect anything
    CHECK(b.wait_for_log("deny client=dev-002 reason=revoked_crl serial="));
    CHECK_FALSE(b.log_contains("reason=not_authenticated"));
}

TEST_CASE("finding 4: one device's denials are logged rate-limited with exact counts, and it is disconnected",
          "[integration][broker_edges]") {
    broker_options o = with_acl({"read $SYS/broker/devicegate/#"});
    o.plugin_opts.push_back({"deny_log_burst", "5"});
    o.plugin_opts.push_back({"deny_log_interval", "2s"});
    o.plugin_opts.push_back({"deny_disconnect_after", "300/10s"});
    o.plugin_opts.push_back({"stats_interval", "500ms"});
    broker b(o);
    REQUIRE(b.start());
    auto flooder = device("dev-001");
    REQUIRE(flooder->connect(b.port()) == 0);
    auto bystander = device("dev-003");
    REQUIRE(bystander->connect(b.port()) == 0);
    REQUIRE(bystander->subscribe("$SYS/broker/devicegate/denies/acl_denied") >= 0);
    int refused = 0;
    for (int i = 0; i < 200; ++i) refused += flooder->publish("devices/dev-003/x", "flood") == 135 ? 1 : 0;
    CHECK(refused == 200);
    auto count = [&](const std::string& needle) {
        const std::string text = b.log();
        std::size_t n = 0;
        for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
        return n;
    };
    CHECK(count("deny client=dev-001 reason=acl_denied") == 5);
    // The window ends while the device is quiet: one summary with the exact count of the rest.
    CHECK(b.wait_for_log("deny_summary client=dev-001 suppressed=195 interval=2s last_topic=\"devices/dev-003/x\"",
                         6000ms));
    CHECK(eventually([&] { return bystander->wait_message("$SYS/broker/devicegate/denies/acl_denied", 600ms) == "200"; },
                     5000ms));
    // 300 denials within 10 s: disconnected on the next tick.
    for (int i = 0; i < 150 && flooder->connected(); ++i) flooder->publish("devices/dev-003/x", "flood");
    CHECK(flooder->wait_disconnected(5s));
    CHECK(b.wait_for_log("kick client=dev-001 reason=too_many_denials count=300 interval=10s"));
    CHECK(bystander->connected());
    auto again = device("dev-001");
    CHECK(again->connect(b.port()) == 0);  // a kick, not a ban
}

TEST_CASE("finding 3: SIGHUP with 20 offline MQTT v5 sessions: no crash, valgrind-clean, still serving",
          "[integration][broker_edges]") {
    // The broker's config from the harness, but mosquitto runs under valgrind.
    broker config_only;
    auto dir = test_dir();
    const auto log = dir / "valgrind-mosquitto.log";
    process mosquitto({"valgrind", "--error-exitcode=99", "--leak-check=no", "mosquitto", "-c",
                       (config_only.dir() / "mosquitto.conf").string()},
                      log);
    REQUIRE(eventually([&] { return slurp(log).find(" running") != std::string::npos; }, 60000ms));

    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    std::vector<std::unique_ptr<process>> subs;
    for (int i = 0; i < 20; ++i) {
        const std::string id = "edge-" + std::to_string(100 + i);
        factory.issue(dir, id);
        // Subscribe, then a normal DISCONNECT: the session stays offline for its 15 s expiry.
        subs.push_back(mosquitto_sub(config_only.port(), id, (dir / (id + ".crt")).string(),
                                     (dir / (id + ".key")).string(),
                                     {"-c", "-x", "15", "-q", "1", "-t", "devices/" + id + "/x", "-E"},
                                     dir / (id + ".log")));
    }
    for (auto& s : subs) REQUIRE(s->wait_exit(30000ms) == 0);

    mosquitto.signal(SIGHUP);
    REQUIRE(eventually([&] { return slurp(log).find("devicegate: reload requested") != std::string::npos; }, 10000ms));
    // Every session expires 15 s after its DISCONNECT (session_expiry__check logs each one).
    auto expired = [&] {
        std::string text = slurp(log);
        std::size_t n = 0;
        for (auto at = text.find("Expiring client edge-"); at != std::string::npos;
             at = text.find("Expiring client edge-", at + 1)) {
            ++n;
        }
        return n;
    };
    CHECK(eventually([&] { return expired() >= 20 || !mosquitto.running(); }, 40000ms));
    REQUIRE(mosquitto.running());
    auto good = device("dev-001");
    CHECK(good->connect(config_only.port(), 20000ms) == 0);
    auto revoked = device("dev-revoked");
    CHECK(revoked->connect(config_only.port(), 20000ms) == 135);  // a revoked device still cannot come back
    mosquitto.signal(SIGTERM);
    auto status = mosquitto.wait_exit(60000ms);
    REQUIRE(status);
    const std::string text = slurp(log);
    auto first_error = text.find("Invalid ");
    INFO("valgrind: " << (first_error == std::string::npos ? "" : text.substr(first_error, 3000)));
    CHECK(*status == 0);
    CHECK(slurp(log).find("Invalid read") == std::string::npos);
    CHECK(slurp(log).find("Invalid write") == std::string::npos);
}

TEST_CASE("finding 7: started as root with user mosquitto, an unreadable CA file names the user",
          "[integration][broker_edges]") {
    if (::geteuid() != 0 || ::getpwnam("mosquitto") == nullptr) {
        WARN("needs root and a 'mosquitto' user (Debian's mosquitto package): skipped");
        return;
    }
    auto dir = test_dir();
    std::filesystem::create_directories(dir / "private");
    std::filesystem::copy_file(pki("subca-a.crt"), dir / "private" / "subca-a.crt");
    ::chmod((dir / "private").c_str(), 0700);  // root only: mosquitto's `user` cannot even stat the file
    ::chmod(dir.c_str(), 0755);
    // The plugin from a directory mosquitto's user can read: a checkout may sit in a private
    // directory (mktemp -d makes it 0700), which is not what this test is about.
    const auto plugin = dir / "devicegate.so";
    std::filesystem::copy_file(DEVICEGATE_PLUGIN_PATH, plugin);
    ::chmod(plugin.c_str(), 0755);
    const int port = free_port();
    write_text(dir / "mosquitto.conf",
               "log_dest stderr\npersistence false\nuser mosquitto\nlistener " + std::to_string(port) +
                   " 127.0.0.1\ncafile " + pki("tenant-a-chain.crt") + "\ncertfile " + pki("server-chain.crt") +
                   "\nkeyfile " + pki("server.key") + "\nrequire_certificate true\nplugin " + plugin.string() +
                   "\nplugin_opt_tenant_ca_file " + (dir / "private" / "subca-a.crt").string() +
                   "\nplugin_opt_ica_file " + pki("ica.crt") + "\nplugin_opt_root_ca_file " + pki("root.crt") +
                   "\nplugin_opt_crl_file " + pki("subca-a.crl.pem") + "\n");
    ::chmod((dir / "mosquitto.conf").c_str(), 0644);
    process mosquitto({"mosquitto", "-c", (dir / "mosquitto.conf").string()}, dir / "mosquitto.log");
    auto status = mosquitto.wait_exit(10000ms);
    REQUIRE(status);
    CHECK(*status != 0);
    const std::string text = slurp(dir / "mosquitto.log");
    INFO(text);
    CHECK(text.find("subca-a.crt: cannot stat: Permission denied (mosquitto runs as user mosquitto: make the file "
                    "and every directory above it readable by mosquitto") != std::string::npos);
}

TEST_CASE("finding 6: a service identity reads device data by its own rules, gets no job, survives a stale deny-list, "
          "and is refused when revoked",
          "[integration][broker_edges][redis]") {
    auto dir = test_dir();
    devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    factory.issue(dir, "svc-telemetry");
    auto service = [&] {
        return std::make_unique<client>("svc-telemetry", (dir / "svc-telemetry.crt").string(),
                                        (dir / "svc-telemetry.key").string());
    };
    redis_server redis;
    REQUIRE(redis.start());
    broker_options o = with_acl({});
    o.plugin_opts.push_back({"service", "svc-telemetry read devices/+/telemetry"});
    o.plugin_opts.push_back({"denylist_grace", "1s"});
    o.redis = &redis;
    broker b(o);
    REQUIRE(b.start());
    REQUIRE(b.wait_for_log("redis link up"));

    auto svc = service();
    REQUIRE(svc->connect(b.port()) == 0);
    CHECK(b.wait_for_log("devicegate: allow service=svc-telemetry"));
    CHECK(svc->subscribe("devices/+/telemetry") == 1);
    CHECK(svc->subscribe("devices/+/cmd") == 135);                 // only its own rules
    CHECK(svc->subscribe("devices/svc-telemetry/#") == 135);       // the device rule (%c) is not its
    CHECK(svc->publish("devices/dev-001/telemetry", "forged") == 135);
    auto dev = device("dev-001");
    REQUIRE(dev->connect(b.port()) == 0);
    CHECK(accepted(dev->publish("devices/dev-001/telemetry", "21.5")));
    CHECK(svc->wait_message("devices/dev-001/telemetry", 5000ms) == "21.5");
    // No first-connect job for the service, one for the device.
    CHECK(eventually([&] { return redis.integer({"XLEN", "devicegate:jobs"}) == 1; }));
    CHECK(redis.command({"XRANGE", "devicegate:jobs", "-", "+"}).find("svc-telemetry") == std::string::npos);

    // Redis down longer than denylist_grace under policy deny: devices refused, the service admitted.
    redis.kill();
    REQUIRE(b.wait_for_log("redis link down"));
    CHECK(eventually([&] { return device("dev-003")->connect(b.port()) == 135; }, 10000ms));
    CHECK(b.wait_for_log("devicegate: deny client=dev-003 reason=denylist_stale"));
    auto svc2 = service();
    CHECK(svc2->connect(b.port()) == 0);
    svc2.reset();

    // Revoked (deny-list by name): disconnected, and refused.
    REQUIRE(redis.start());
    REQUIRE(b.wait_for_log("redis link up", 15000ms));
    auto svc3 = service();
    REQUIRE(svc3->connect(b.port()) == 0);
    REQUIRE(ctl({"revoke", "svc-telemetry", "--force"}, redis.url()).exit_code == 0);
    CHECK(svc3->wait_disconnected(5s));
    CHECK(b.wait_for_log("devicegate: kick client=svc-telemetry reason=revoked_denylist"));
    CHECK(service()->connect(b.port()) == 135);
    CHECK(b.wait_for_log("devicegate: deny client=svc-telemetry reason=revoked_denylist"));
}

TEST_CASE("finding 6: a separate service CA issues services only", "[integration][broker_edges]") {
    // Tenant B's Sub-CA (also under the provider ICA) stands in for a service CA.
    auto dir = test_dir();
    devicegate::test::cert_factory service_ca(pki("subca-b.crt"), pki("subca-b.key"));
    service_ca.issue(dir, "svc-unnamed");
    // mosquitto's TLS check trusts the tenant A chain: the client sends its Sub-CA along.
    write_text(dir / "svc-unnamed-chain.crt", slurp(dir / "svc-unnamed.crt") + slurp(pki("subca-b.crt")));
    broker_options o = with_acl({});
    o.plugin_opts.push_back({"service", "tenant-b-dev read devices/+/telemetry"});
    o.plugin_opts.push_back({"service_ca_file", pki("subca-b.crt")});
    broker b(o);
    REQUIRE(b.start());
    auto svc = device("tenant-b-dev", "", pki("devices/tenant-b-dev-chain.crt"));
    REQUIRE(svc->connect(b.port()) == 0);
    CHECK(b.wait_for_log("devicegate: allow service=tenant-b-dev"));
    CHECK(svc->subscribe("devices/+/telemetry") == 1);
    CHECK(svc->subscribe("devices/tenant-b-dev/#") == 135);
    client unnamed("svc-unnamed", (dir / "svc-unnamed-chain.crt").string(), (dir / "svc-unnamed.key").string());
    CHECK(unnamed.connect(b.port()) == 135);
    CHECK(b.wait_for_log("deny client=svc-unnamed reason=wrong_issuer"));
    CHECK(b.log_contains("is not a configured service (plugin_opt_service)"));
    CHECK(device("dev-001")->connect(b.port()) == 0);  // devices still come from the tenant Sub-CA
}
