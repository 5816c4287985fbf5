#include "devicegate/listener_check.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

using namespace devicegate;
using namespace devicegate::test;

namespace {

// A temporary directory with a stand-in plugin file and helpers to check configs against it.
struct fixture {
    temp_dir dir;
    std::string plugin = dir.file("devicegate.so");
    std::string conf = dir.file("mosquitto.conf");
    fixture() { write_file(plugin, "not a real plugin"); }

    // A listener DeviceGate accepts, on `port`.
    static std::string good_listener(int port) {
        return "listener " + std::to_string(port) + "\ncafile /ca\ncertfile /c\nkeyfile /k\nrequire_certificate true\n";
    }
    std::vector<listener_finding> check(const std::string& text) {
        write_file(conf, text);
        return check_mosquitto_configs({conf}, {plugin});
    }
    std::vector<listener_finding> check_files(const std::vector<std::string>& paths) {
        return check_mosquitto_configs(paths, {plugin});
    }
};

// The finding for `setting` (as written), or a failed test.
listener_finding find(const std::vector<listener_finding>& findings, const std::string& setting) {
    for (const auto& f : findings) {
        if (f.setting == setting) return f;
    }
    std::string all;
    for (const auto& f : findings) all += f.file + ":" + std::to_string(f.line) + ": " + f.setting + "\n";
    FAIL("no finding for \"" << setting << "\"; findings:\n" << all);
    return {};
}

bool any_bypass(const std::vector<listener_finding>& findings) {
    return std::any_of(findings.begin(), findings.end(), [](const auto& f) { return f.bypass; });
}

}  // namespace

TEST_CASE("listener check: a clean configuration passes", "[listener_check]") {
    fixture fx;
    SECTION("one listener, global plugin") {
        CHECK(fx.check("per_listener_settings false\n" + fixture::good_listener(8883) + "plugin " + fx.plugin + "\n")
                  .empty());
    }
    SECTION("two listeners, per_listener_settings true, DeviceGate on each") {
        auto text = "per_listener_settings true\n" + fixture::good_listener(8883) + "plugin " + fx.plugin +
                    "\nallow_anonymous false\n" + fixture::good_listener(8884) + "plugin " + fx.plugin + "\n";
        CHECK(fx.check(text).empty());
    }
    SECTION("a symlink to the plugin is the plugin") {
        std::filesystem::create_symlink(fx.plugin, fx.dir.file("link.so"));
        CHECK(fx.check(fixture::good_listener(8883) + "plugin " + fx.dir.file("link.so") + "\n").empty());
    }
}

TEST_CASE("listener check: settings that let clients past BASIC_AUTH", "[listener_check]") {
    fixture fx;
    const std::string base = fixture::good_listener(8883);
    const std::string plugin = "plugin " + fx.plugin + "\n";
    SECTION("use_identity_as_username and use_subject_as_username, in every spelling mosquitto accepts") {
        for (const std::string v : {"true", "1"}) {
            auto findings = fx.check(base + "use_identity_as_username " + v + "\n" + plugin);
            auto f = find(findings, "use_identity_as_username " + v);
            CHECK(f.line == 6);
            CHECK(f.file == fx.conf);
            CHECK(f.bypass);
            CHECK_THAT(f.why, Catch::Contains("skips MOSQ_EVT_BASIC_AUTH"));
            CHECK(find(fx.check(base + "use_subject_as_username " + v + "\n" + plugin),
                       "use_subject_as_username " + v).bypass);
        }
        CHECK(fx.check(base + "use_identity_as_username 0\nuse_subject_as_username false\n" + plugin).empty());
        CHECK(fx.check(base + "# use_identity_as_username true\n" + plugin).empty());
    }
    SECTION("a spelling mosquitto does not accept is refused, not read as false") {
        CHECK(find(fx.check(base + "use_identity_as_username yes\n" + plugin), "use_identity_as_username yes").bypass);
        CHECK(find(fx.check(base + "require_certificate on\n" + plugin), "require_certificate on").bypass);
    }
    SECTION("password_file, psk_file, psk_hint, acl_file, allow_anonymous true") {
        auto findings = fx.check(base + plugin + "password_file /pw\nacl_file /acl\nallow_anonymous true\n"
                                 "listener 8884\npsk_hint hint\npsk_file /psk\nrequire_certificate true\n");
        CHECK(find(findings, "password_file").line == 7);
        CHECK(find(findings, "acl_file").line == 8);
        CHECK(find(findings, "allow_anonymous true").line == 9);
        CHECK_THAT(find(findings, "psk_hint hint").why, Catch::Contains("TLS-PSK"));
        CHECK(find(findings, "psk_file").line == 12);
    }
    SECTION("a listener without TLS or without require_certificate true") {
        auto findings = fx.check(plugin + "listener 1883\nlistener 8883\ncertfile /c\nkeyfile /k\n"
                                 "listener 8884\ncertfile /c\nkeyfile /k\nrequire_certificate false\n");
        CHECK(find(findings, "certfile").line == 2);
        CHECK(find(findings, "require_certificate").line == 2);
        CHECK(find(findings, "require_certificate").line == 2);
        CHECK(find(findings, "require_certificate false").line == 9);
        CHECK(std::count_if(findings.begin(), findings.end(),
                            [](const auto& f) { return f.setting == "require_certificate" && f.line == 3; }) == 1);
    }
    SECTION("websockets listeners are listeners too") {
        auto findings = fx.check(plugin + base + "listener 9001\nprotocol websockets\n");
        auto f = find(findings, "certfile");
        CHECK(f.line == 7);
        CHECK_THAT(f.why, Catch::Contains("(websockets)"));
    }
    SECTION("no listener at all: mosquitto's local-only mode") {
        CHECK(find(fx.check(plugin), "listener").bypass);
    }
}

TEST_CASE("listener check: per_listener_settings and plugins", "[listener_check]") {
    fixture fx;
    const std::string plugin = "plugin " + fx.plugin + "\n";
    SECTION("the reported bypass: a second listener with allow_anonymous true and no plugin") {
        auto findings = fx.check("per_listener_settings true\n" + fixture::good_listener(8883) + plugin +
                                 fixture::good_listener(8884) + "allow_anonymous true\n");
        auto no_gate = find(findings, "plugin");
        CHECK(no_gate.line == 8);
        CHECK_THAT(no_gate.why, Catch::Contains("per_listener_settings true (" + fx.conf + ":1)"));
        CHECK(find(findings, "allow_anonymous true").line == 13);
    }
    SECTION("per_listener_settings true: a plugin line before the first listener loads it for no listener") {
        auto findings = fx.check("per_listener_settings true\n" + plugin + fixture::good_listener(8883));
        // ... it creates mosquitto's default listener on plain port 1883, with anonymous allowed.
        CHECK_THAT(find(findings, "certfile").why, Catch::Contains("the default listener"));
        CHECK(find(findings, "allow_anonymous").line == 2);
        CHECK(find(findings, "plugin").line == 3);
    }
    SECTION("per_listener_settings true: allow_zero_length_clientid false before any listener creates the default "
            "listener") {
        auto findings = fx.check("per_listener_settings true\nallow_zero_length_clientid false\n" +
                                 fixture::good_listener(8883) + plugin);
        CHECK_THAT(find(findings, "certfile").why,
                   Catch::Contains("the default listener (port 1883, created by allow_zero_length_clientid false)"));
        CHECK(any_bypass(findings));
        // true (mosquitto's default) or after a listener line: no default listener.
        CHECK(fx.check("per_listener_settings true\nallow_zero_length_clientid true\n" + fixture::good_listener(8883) +
                       plugin + "allow_anonymous false\n")
                  .empty());
        CHECK(fx.check("per_listener_settings true\n" + fixture::good_listener(8883) + plugin +
                       "allow_anonymous false\nallow_zero_length_clientid false\n")
                  .empty());
    }
    SECTION("another plugin before DeviceGate answers first; after it, a warning") {
        write_file(fx.dir.file("other.so"), "x");
        auto findings = fx.check(fixture::good_listener(8883) + "plugin " + fx.dir.file("other.so") + "\n" + plugin +
                                 "auth_plugin " + fx.dir.file("other.so") + "\n");
        CHECK(find(findings, "plugin").bypass);
        CHECK_FALSE(find(findings, "auth_plugin").bypass);
    }
    SECTION("a bridge is a warning") {
        CHECK_FALSE(find(fx.check(fixture::good_listener(8883) + plugin + "connection up\n"), "connection").bypass);
    }
}

TEST_CASE("listener check: reads what mosquitto reads", "[listener_check]") {
    fixture fx;
    const std::string plugin = "plugin " + fx.plugin + "\n";
    SECTION("include_dir: *.conf files longer than '.conf', in mosquitto's order, listener reset per file") {
        std::filesystem::create_directories(fx.dir.file("conf.d"));
        write_file(fx.dir.file("conf.d/b.conf"), "listener 8884\n");
        write_file(fx.dir.file("conf.d/A.conf"), fixture::good_listener(8885));
        write_file(fx.dir.file("conf.d/ignored.txt"), "password_file /x\n");
        write_file(fx.dir.file("conf.d/.conf"), "password_file /x\n");
        auto findings = fx.check(fixture::good_listener(8883) + plugin + "include_dir " + fx.dir.file("conf.d") + "\n");
        REQUIRE(findings.size() == 2);  // b.conf's listener: no TLS, no require_certificate
        CHECK(findings[0].file == fx.dir.file("conf.d/b.conf"));
        // A.conf is read before b.conf; in b.conf, require_certificate would apply to the default listener.
        write_file(fx.dir.file("conf.d/b.conf"), "require_certificate true\n");
        findings = fx.check(fixture::good_listener(8883) + plugin + "include_dir " + fx.dir.file("conf.d") + "\n");
        CHECK_THAT(find(findings, "certfile").why, Catch::Contains("the default listener"));
    }
    SECTION("include_dir in an included file is ignored, as mosquitto ignores it") {
        std::filesystem::create_directories(fx.dir.file("d1"));
        std::filesystem::create_directories(fx.dir.file("d2"));
        write_file(fx.dir.file("d1/x.conf"), "include_dir " + fx.dir.file("d2") + "\n");
        write_file(fx.dir.file("d2/y.conf"), "password_file /x\n");
        CHECK(fx.check(fixture::good_listener(8883) + plugin + "include_dir " + fx.dir.file("d1") + "\n").empty());
    }
    SECTION("several -c files: read in order into one configuration") {
        write_file(fx.dir.file("a.conf"), fixture::good_listener(8883) + plugin);
        write_file(fx.dir.file("b.conf"), "use_subject_as_username true\n");  // the default listener
        write_file(fx.dir.file("c.conf"), fixture::good_listener(8884) + "use_identity_as_username 1\n");
        auto findings = fx.check_files({fx.dir.file("a.conf"), fx.dir.file("b.conf"), fx.dir.file("c.conf")});
        CHECK(find(findings, "use_identity_as_username 1").file == fx.dir.file("c.conf"));
        CHECK(find(findings, "use_subject_as_username true").file == fx.dir.file("b.conf"));
        CHECK(fx.check_files({fx.dir.file("a.conf")}).empty());
    }
    SECTION("a -c file mosquitto has but DeviceGate cannot read is refused") {
        auto f = find(fx.check_files({fx.dir.file("missing.conf")}), "-c/include_dir");
        CHECK_THAT(f.why, Catch::Contains("as user "));
    }
    SECTION("only spaces separate words; tabs, CRLF and leading blanks as mosquitto reads them") {
        CHECK(find(fx.check(fixture::good_listener(8883) + plugin + "   use_identity_as_username   true\r\n"),
                   "use_identity_as_username true")
                  .line == 7);
        CHECK(fx.check(fixture::good_listener(8883) + plugin + "use_identity_as_username\ttrue\n").empty());
    }
    SECTION("persistence_location from an include_dir file") {
        std::filesystem::create_directories(fx.dir.file("conf.d"));
        write_file(fx.dir.file("conf.d/p.conf"), "persistence_location  /var/lib/m q/ \n");
        write_file(fx.conf, "include_dir " + fx.dir.file("conf.d") + "\n");
        CHECK(persistence_location(fx.conf) == "/var/lib/m q/");
    }
}

TEST_CASE("listener check: config paths from the command line", "[listener_check]") {
    using namespace std::string_literals;
    CHECK(config_path_from_cmdline("mosquitto\0-c\0/etc/m.conf\0"s) == "/etc/m.conf");
    CHECK(config_path_from_cmdline("mosquitto\0-v\0--config-file\0/x.conf\0"s) == "/x.conf");
    CHECK(config_path_from_cmdline("mosquitto\0-v\0"s).empty());
    CHECK(config_path_from_cmdline("mosquitto\0-c"s).empty());
    CHECK(config_paths_from_cmdline("mosquitto\0-c\0/a\0-p\0-c\0-c\0/b\0"s) == std::vector<std::string>{"/a", "/b"});
    CHECK(config_path_from_cmdline("mosquitto\0-c\0/a\0-c\0/b\0"s) == "/b");
}

TEST_CASE("listener check: the interface plugin/ calls checks against this module", "[listener_check]") {
    fixture fx;
    // In the unit test binary, own_module_path() is the test binary, which no plugin line names.
    CHECK_FALSE(own_module_path().empty());
    write_file(fx.conf, fixture::good_listener(8883) + "plugin " + own_module_path() + "\n");
    CHECK(check_mosquitto_config(fx.conf).empty());
    write_file(fx.conf, fixture::good_listener(8883) + "plugin " + fx.plugin + "\n");
    CHECK(any_bypass(check_mosquitto_config(fx.conf)));
}
