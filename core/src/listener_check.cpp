#include "devicegate/listener_check.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace devicegate {

namespace {

void scan_file(const std::string& path, std::vector<listener_finding>& out, int depth) {
    std::ifstream in(path);
    if (!in) return;
    std::string line;
    int number = 0;
    bool tls_listener = false;
    bool require_certificate = false;
    int listener_line = 0;
    auto close_listener = [&] {
        if (tls_listener && !require_certificate) {
            out.push_back({path, listener_line, "require_certificate",
                           "a TLS listener without require_certificate true admits clients without a certificate "
                           "to the plugin, which refuses them (reason=no_certificate)",
                           false});
        }
        tls_listener = require_certificate = false;
    };
    while (std::getline(in, line)) {
        ++number;
        std::istringstream words(line);
        std::string key, value;
        words >> key >> value;
        if (key.empty() || key[0] == '#') continue;
        if (key == "listener") {
            close_listener();
            listener_line = number;
        } else if (key == "certfile") {
            tls_listener = true;
        } else if (key == "require_certificate") {
            require_certificate = value == "true";
        } else if ((key == "use_identity_as_username" || key == "use_subject_as_username") && value == "true") {
            out.push_back({path, number, key + " true",
                           "mosquitto 2.0 skips MOSQ_EVT_BASIC_AUTH on such a listener, so DeviceGate never sees "
                           "the connect; leave it off (the plugin sets the username itself)"});
        } else if (key == "password_file" || key == "psk_file") {
            out.push_back({path, number, key,
                           "mosquitto's own authentication may admit clients before DeviceGate is asked; remove it"});
        } else if (key == "acl_file") {
            out.push_back({path, number, key,
                           "mosquitto's own ACL may grant topics before DeviceGate is asked; use plugin_opt_acl_pattern"});
        } else if (key == "include_dir" && !value.empty() && depth == 0) {
            std::vector<std::string> files;
            std::error_code ec;
            for (const auto& entry : std::filesystem::directory_iterator(value, ec)) {
                if (entry.path().extension() == ".conf") files.push_back(entry.path().string());
            }
            std::sort(files.begin(), files.end());
            for (const auto& f : files) scan_file(f, out, depth + 1);
        }
    }
    close_listener();
}

}  // namespace

std::vector<listener_finding> check_mosquitto_config(const std::string& path) {
    std::vector<listener_finding> out;
    scan_file(path, out, 0);
    return out;
}

std::string persistence_location(const std::string& path) {
    std::ifstream in(path);
    std::string line, found;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string key, value;
        words >> key >> value;
        if (key == "persistence_location") found = value;
    }
    return found;
}

std::string config_path_from_cmdline(const std::string& cmdline) {
    std::vector<std::string> args;
    std::string current;
    for (char c : cmdline) {
        if (c == '\0') {
            args.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    if (!current.empty()) args.push_back(current);
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
        if (args[i] == "-c" || args[i] == "--config-file") return args[i + 1];
    }
    return {};
}

}  // namespace devicegate
