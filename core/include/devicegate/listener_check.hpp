#pragma once
// Refuses mosquitto configurations under which a client gets in, or a message gets through,
// without passing DeviceGate's MOSQ_EVT_BASIC_AUTH (docs/listener-check.md). The check
// re-reads the configuration the way mosquitto 2.0.11 reads it (src/conf.c,
// src/conf_includedir.c): every `-c` file in order into one configuration, include_dir files
// sorted like mosquitto sorts them, booleans spelled only true/false/1/0, security settings per
// listener when per_listener_settings is true, mosquitto's defaults for allow_anonymous and for
// the implicit default listener. Then every listener mosquitto would open must be TLS with
// require_certificate true, without use_identity_as_username/use_subject_as_username, PSK,
// password_file, acl_file or allow_anonymous, and must have DeviceGate as its first plugin.
#include <string>
#include <vector>

namespace devicegate {

struct listener_finding {
    std::string file;
    int line = 0;         // 0: the setting is missing or is mosquitto's default (no line sets it)
    std::string setting;  // as written ("use_identity_as_username 1"), or the missing key
    std::string why;
    bool bypass = true;  // false: only a warning
};

struct listener_check_options {
    /// The DeviceGate plugin file. A `plugin`/`auth_plugin` line loads DeviceGate when it names
    /// the same file (compared by device and inode, so symlinks match).
    std::string plugin_path;
};

/// Checks the configuration mosquitto builds from these `-c` files, read in this order.
std::vector<listener_finding> check_mosquitto_configs(const std::vector<std::string>& paths,
                                                      const listener_check_options& options);

/// Interface used by plugin/: checks `path`, or, when this process is a mosquitto started with
/// several -c files including `path`, all of them in order; the plugin file is this module
/// (dladdr). New code should call check_mosquitto_configs.
std::vector<listener_finding> check_mosquitto_config(const std::string& path);

/// The client-certificate trust of one listener mosquitto opens: mosquitto 2.0.11 loads
/// `cafile` and `capath` into the listener's X509_STORE once, when the listener starts
/// (src/net.c net__tls_load_verify; a SIGHUP reloads only certfile, keyfile and crlfile).
struct listener_tls {
    std::string name;  // "listener 8883 0.0.0.0", or the default listener
    std::string cafile, capath;  // "" when unset
    bool websockets = false;
};

/// Every listener mosquitto would open from these -c files, read in this order.
std::vector<listener_tls> listener_tls_settings(const std::vector<std::string>& paths);
/// The same for `path` (with this process's other -c files, as check_mosquitto_config).
std::vector<listener_tls> listener_tls_settings(const std::string& path);

/// The value of persistence_location as mosquitto reads it (include_dir files too), or "".
std::string persistence_location(const std::string& path);

/// Every -c/--config-file argument of a NUL-separated command line (/proc/self/cmdline), in order.
std::vector<std::string> config_paths_from_cmdline(const std::string& cmdline);

/// The last -c/--config-file argument (mosquitto's db.config_file, the file a SIGHUP re-reads),
/// or "" when there is none.
std::string config_path_from_cmdline(const std::string& cmdline);

/// The file of the module (shared object or executable) this code is linked into, or "".
std::string own_module_path();

}  // namespace devicegate
