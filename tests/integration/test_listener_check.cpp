// Through the real mosquitto 2.0.11: every configuration under which a client would get in
// without DeviceGate's BASIC_AUTH stops the broker, and the log names file:line: setting.
#include "harness.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <fstream>

using namespace devicegate::itest;

namespace {

// mosquitto with hand-written configuration files (several listeners, include_dir, several -c).
class config_broker {
public:
    config_broker() : dir_(test_dir()), log_(dir_ / "mosquitto.log") {}

    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    // One state directory for this test process (mosquitto's persistence stays off by default).
    static const std::string& state_dir() {
        static const std::string dir = [] {
            auto d = std::filesystem::temp_directory_path() / ("devicegate-listener-state-" + std::to_string(::getpid()));
            std::filesystem::create_directories(d);
            return d.string();
        }();
        return dir;
    }
    int port(int i) const { return ports_[static_cast<std::size_t>(i)]; }

    // The lines every file set starts with: logging, a persistence_location (which the plugin
    // takes as its state_dir, so no test writes into /var/lib/mosquitto), and no privilege
    // drop in the test directory.
    static std::string head() {
        std::string h = "log_dest stderr\nlog_type all\npersistence_location " + state_dir() + "/\n";
        if (::geteuid() == 0) h += "user root\n";
        return h;
    }
    // A listener DeviceGate accepts (5 lines).
    std::string listener(int i) const {
        return "listener " + std::to_string(port(i)) + " 127.0.0.1\ncafile " + pki("tenant-a-chain.crt") +
               "\ncertfile " + pki("server-chain.crt") + "\nkeyfile " + pki("server.key") + "\nrequire_certificate true\n";
    }
    // DeviceGate's plugin line and options.
    static std::string plugin() {
        return std::string("plugin ") + DEVICEGATE_PLUGIN_PATH + "\nplugin_opt_tenant_ca_file " + pki("subca-a.crt") +
               "\nplugin_opt_ica_file " + pki("ica.crt") + "\nplugin_opt_root_ca_file " + pki("root.crt") +
               "\nplugin_opt_crl_file " + pki("subca-a.crl.pem") + "\n";
    }
    void write(const std::string& name, const std::string& text) const {
        std::filesystem::create_directories(std::filesystem::path(path(name)).parent_path());
        write_text(path(name), text);
    }

    // Starts mosquitto with `-c` for each file; true once it runs, false if it exited.
    bool start(const std::vector<std::string>& files) {
        std::vector<std::string> argv{"mosquitto"};
        for (const auto& f : files) argv.insert(argv.end(), {"-c", path(f)});
        process_ = std::make_unique<process>(argv, log_);
        eventually([&] { return !process_->running() || log().find(" running") != std::string::npos; }, 10000ms);
        return process_->running();
    }
    std::string log() const {
        std::ifstream in(log_);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    bool logged(const std::string& needle) const { return log().find(needle) != std::string::npos; }
    std::optional<int> wait_exit() { return process_->wait_exit(5000ms); }

private:
    std::filesystem::path dir_;
    std::filesystem::path log_;
    std::vector<int> ports_{free_port(), free_port()};
    std::unique_ptr<process> process_;
};

// The broker must not start, and must log the refusal for file:line: setting.
void refused(config_broker& b, const std::vector<std::string>& files, const std::string& file, int line,
             const std::string& setting) {
    CHECK_FALSE(b.start(files));
    auto status = b.wait_exit();
    REQUIRE(status);
    CHECK(*status != 0);
    const std::string expected =
        "devicegate: listener_check: BYPASS " + b.path(file) + ":" + std::to_string(line) + ": " + setting + ": ";
    INFO("expected log line: " << expected);
    CHECK(b.logged(expected));
    CHECK(b.logged("devicegate: refusing to start: plugin_opt_listener_check"));
}

}  // namespace

TEST_CASE("listener check: per_listener_settings true and a second listener with allow_anonymous true",
          "[integration][listener_check]") {
    config_broker b;
    // Lines: 1-4 head (+user), listener 0, plugin, then listener 1 with allow_anonymous true.
    std::string head = "per_listener_settings true\n" + config_broker::head();
    int first = static_cast<int>(std::count(head.begin(), head.end(), '\n'));
    b.write("m.conf", head + b.listener(0) + config_broker::plugin() + b.listener(1) + "allow_anonymous true\n");
    int second = first + 5 + 5 + 1;
    refused(b, {"m.conf"}, "m.conf", second, "plugin");
    CHECK(b.logged(b.path("m.conf") + ":" + std::to_string(second + 5) + ": allow_anonymous true: "));
}

TEST_CASE("listener check: each setting that skips BASIC_AUTH stops the broker", "[integration][listener_check]") {
    config_broker b;
    const std::string head = config_broker::head() + b.listener(0) + config_broker::plugin();
    const int next = static_cast<int>(std::count(head.begin(), head.end(), '\n')) + 1;
    auto case_of = [&](const std::string& extra, int line_offset, const std::string& setting) {
        b.write("m.conf", head + extra);
        refused(b, {"m.conf"}, "m.conf", next + line_offset, setting);
    };
    SECTION("use_identity_as_username 1 (mosquitto reads 1 as true)") {
        case_of("use_identity_as_username 1\n", 0, "use_identity_as_username 1");
    }
    SECTION("use_subject_as_username true") { case_of("use_subject_as_username true\n", 0, "use_subject_as_username true"); }
    SECTION("password_file") { case_of("password_file " + b.path("pw") + "\n", 0, "password_file"); }
    SECTION("acl_file") { case_of("acl_file " + b.path("acl") + "\n", 0, "acl_file"); }
    SECTION("allow_anonymous true") { case_of("allow_anonymous true\n", 0, "allow_anonymous true"); }
    SECTION("a TLS listener without require_certificate") {
        auto l = b.listener(1);
        case_of(l.substr(0, l.rfind("require_certificate")), 0, "require_certificate");
    }
    SECTION("a TLS listener with require_certificate false") {
        case_of(b.listener(1) + "require_certificate false\n", 5, "require_certificate false");
    }
    SECTION("a plain listener") { case_of("listener " + std::to_string(b.port(1)) + " 127.0.0.1\n", 0, "certfile"); }
    SECTION("a TLS-PSK listener") {
        case_of("listener " + std::to_string(b.port(1)) + " 127.0.0.1\npsk_hint gate\npsk_file " + b.path("psk") + "\n",
                1, "psk_hint gate");
    }
    SECTION("a websockets listener without TLS") {
        case_of("listener " + std::to_string(b.port(1)) + " 127.0.0.1\nprotocol websockets\n", 0, "certfile");
        CHECK(b.logged("no TLS (mosquitto needs certfile and keyfile): clients connect without a certificate [listener " +
                       std::to_string(b.port(1)) + " 127.0.0.1 (websockets)]"));
    }
    SECTION("a websockets listener with TLS and use_identity_as_username") {
        case_of(b.listener(1) + "protocol websockets\nuse_identity_as_username true\n", 6,
                "use_identity_as_username true");
    }
}

TEST_CASE("listener check: mosquitto refuses boolean spellings other than true/false/1/0 itself",
          "[integration][listener_check]") {
    config_broker b;
    b.write("m.conf", config_broker::head() + b.listener(0) + "use_identity_as_username yes\n" + config_broker::plugin());
    CHECK_FALSE(b.start({"m.conf"}));
    CHECK(b.logged("Error: Invalid use_identity_as_username value (yes)."));
}

TEST_CASE("listener check: per-listener plugin sets must load DeviceGate on every listener",
          "[integration][listener_check]") {
    config_broker b;
    std::string head = "per_listener_settings true\n" + config_broker::head();
    int lines = static_cast<int>(std::count(head.begin(), head.end(), '\n'));
    b.write("m.conf", head + b.listener(0) + config_broker::plugin() + "allow_anonymous false\n" + b.listener(1) +
                          "allow_anonymous false\n");
    refused(b, {"m.conf"}, "m.conf", lines + 5 + 5 + 1 + 1, "plugin");
    CHECK(b.logged("is not loaded for this listener: per_listener_settings true"));
}

TEST_CASE("listener check: include_dir files and several -c files are read as mosquitto reads them",
          "[integration][listener_check]") {
    config_broker b;
    SECTION("include_dir") {
        b.write("conf.d/10-listener.conf", b.listener(1) + "use_identity_as_username true\n");
        b.write("m.conf", config_broker::head() + b.listener(0) + config_broker::plugin() + "include_dir " +
                              b.path("conf.d") + "\n");
        refused(b, {"m.conf"}, "conf.d/10-listener.conf", 6, "use_identity_as_username true");
    }
    SECTION("several -c: the second file opens a listener without require_certificate") {
        b.write("a.conf", config_broker::head() + b.listener(0) + config_broker::plugin());
        b.write("b.conf", "listener " + std::to_string(b.port(1)) + " 127.0.0.1\ncertfile " + pki("server-chain.crt") +
                              "\nkeyfile " + pki("server.key") + "\n");
        refused(b, {"a.conf", "b.conf"}, "b.conf", 1, "require_certificate");
    }
}

TEST_CASE("listener check: a correct configuration with two listeners starts and serves both",
          "[integration][listener_check]") {
    config_broker b;
    SECTION("per_listener_settings false: one plugin line for all listeners") {
        b.write("m.conf", config_broker::head() + b.listener(0) + b.listener(1) + config_broker::plugin());
    }
    SECTION("per_listener_settings true: DeviceGate after each listener") {
        b.write("m.conf", "per_listener_settings true\n" + config_broker::head() + b.listener(0) +
                              config_broker::plugin() + "allow_anonymous false\n" + b.listener(1) +
                              config_broker::plugin() + "allow_anonymous false\n");
    }
    REQUIRE(b.start({"m.conf"}));
    CHECK_FALSE(b.logged("listener_check: BYPASS"));
    for (int i : {0, 1}) {
        auto c = device("dev-001");
        CHECK(c->connect(b.port(i)) == 0);
    }
}
