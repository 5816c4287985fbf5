#pragma once
// Finds mosquitto.conf settings under which the broker would admit a client, or allow a
// publish, without asking the plugin (DESIGN.md section 2): with use_identity_as_username
// or use_subject_as_username mosquitto 2.0 never fires MOSQ_EVT_BASIC_AUTH
// (src/handle_connect.c); password_file, psk_file and acl_file register mosquitto's own
// callbacks beside the plugin's (src/security_default.c).
#include <string>
#include <vector>

namespace devicegate {

struct listener_finding {
    std::string file;
    int line = 0;
    std::string setting;
    std::string why;
    bool bypass = true;  // false: only a warning
};

/// Scans a mosquitto config file and the *.conf files of its include_dir lines.
std::vector<listener_finding> check_mosquitto_config(const std::string& path);

/// The value of persistence_location in a mosquitto config file, or "" when not set.
std::string persistence_location(const std::string& path);

/// The -c/--config-file argument of a NUL-separated command line (/proc/self/cmdline),
/// or "" when there is none.
std::string config_path_from_cmdline(const std::string& cmdline);

}  // namespace devicegate
