#include "devicegate/listener_check.hpp"
#include "test_pki.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

using namespace devicegate;
using namespace devicegate::test;

TEST_CASE("listener check: finds settings that bypass the plugin") {
    temp_dir dir;
    const std::string conf = dir.file("mosquitto.conf");
    SECTION("a clean DeviceGate listener") {
        write_file(conf,
                   "per_listener_settings false\nlistener 8883\ncafile /x\ncertfile /c\nkeyfile /k\n"
                   "require_certificate true\nplugin /p.so\n");
        CHECK(check_mosquitto_config(conf).empty());
    }
    SECTION("use_identity_as_username, use_subject_as_username, password_file, acl_file") {
        write_file(conf,
                   "listener 8883\ncertfile /c\nrequire_certificate true\nuse_identity_as_username true\n"
                   "# use_subject_as_username true\nlistener 8884\ncertfile /c\nrequire_certificate true\n"
                   "use_subject_as_username true\npassword_file /pw\nacl_file /acl\n");
        auto findings = check_mosquitto_config(conf);
        REQUIRE(findings.size() == 4);
        CHECK(findings[0].setting == "use_identity_as_username true");
        CHECK(findings[0].line == 4);
        CHECK(findings[0].bypass);
        CHECK(findings[1].setting == "use_subject_as_username true");
        CHECK(findings[2].setting == "password_file");
        CHECK(findings[3].setting == "acl_file");
    }
    SECTION("a TLS listener without require_certificate is a warning") {
        write_file(conf, "listener 8883\ncertfile /c\n");
        auto findings = check_mosquitto_config(conf);
        REQUIRE(findings.size() == 1);
        CHECK_FALSE(findings[0].bypass);
        CHECK(findings[0].setting == "require_certificate");
    }
    SECTION("files of include_dir are read") {
        std::filesystem::create_directories(dir.file("conf.d"));
        write_file(conf, "include_dir " + dir.file("conf.d") + "\n");
        write_file(dir.file("conf.d/a.conf"), "use_identity_as_username true\n");
        write_file(dir.file("conf.d/ignored.txt"), "password_file /x\n");
        auto findings = check_mosquitto_config(conf);
        REQUIRE(findings.size() == 1);
        CHECK(findings[0].file == dir.file("conf.d/a.conf"));
    }
}

TEST_CASE("listener check: config path from the command line") {
    using namespace std::string_literals;
    CHECK(config_path_from_cmdline("mosquitto\0-c\0/etc/m.conf\0"s) == "/etc/m.conf");
    CHECK(config_path_from_cmdline("mosquitto\0-v\0--config-file\0/x.conf\0"s) == "/x.conf");
    CHECK(config_path_from_cmdline("mosquitto\0-v\0"s).empty());
    CHECK(config_path_from_cmdline("mosquitto\0-c"s).empty());
}
