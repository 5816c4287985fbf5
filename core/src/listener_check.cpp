#include "devicegate/listener_check.hpp"

#include <dirent.h>
#include <dlfcn.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <tuple>

namespace devicegate {

namespace {

// Where a setting was read: file, line and the setting as written.
struct site {
    std::string file;
    int line = 0;
    std::string text;
};

// mosquitto's struct mosquitto__security_options, reduced to what admits clients.
struct security_opts {
    int allow_anonymous = -1;  // mosquitto's tri-state: -1 unset, 0, 1
    site allow_anonymous_site;
    std::vector<site> password_file, psk_file, acl_file;
    std::vector<std::pair<site, std::string>> plugins;  // (line, path) in load order
};

// mosquitto's struct mosquitto__listener, reduced likewise.
struct listener_conf {
    site declared;  // the `listener` line; empty file for the implicit default listener
    bool websockets = false;
    std::optional<site> certfile, keyfile, psk_hint, use_identity, use_subject;
    std::string cafile, capath;  // conf__parse_string: the rest of the line, trimmed
    bool require_certificate = false;
    std::optional<site> require_certificate_site;
    bool in_use = false;  // default listener: config__parse_args creates it only when set
    security_opts security;
    // default listener, per_listener_settings true: `allow_zero_length_clientid false` before
    // any listener line creates it too (src/conf.c config__parse_args: "!= true").
    std::optional<site> zero_length_clientid_off;
};

struct conf_state {
    bool per_listener = false;
    site per_listener_site;
    bool local_only = true;           // src/conf.c: cleared by listener, port, bind_address
    bool security_touched = false;    // src/conf.c: cur_security_options != NULL
    security_opts global;
    listener_conf default_listener;
    std::vector<listener_conf> listeners;
    std::string persistence_location;
    std::vector<listener_finding> findings;
};

// strtok_r(buf, " ") as src/conf.c tokenises a line: only spaces separate words.
class words {
public:
    explicit words(std::string line) : line_(std::move(line)) {}
    std::optional<std::string> next() {
        pos_ = line_.find_first_not_of(' ', pos_);
        if (pos_ == std::string::npos) return std::nullopt;
        auto end = line_.find(' ', pos_);
        std::string word = line_.substr(pos_, end == std::string::npos ? std::string::npos : end - pos_);
        pos_ = end == std::string::npos ? line_.size() : end + 1;
        return word;
    }
    // strtok_r(NULL, "", ...): the rest of the line as it is (include_dir, listener paths).
    std::optional<std::string> rest() const {
        if (pos_ >= line_.size()) return std::nullopt;
        return line_.substr(pos_);
    }
    // conf__parse_string: the rest, trimmed of blanks at both ends (misc__trimblanks).
    std::string rest_trimmed() const {
        std::string r = rest().value_or("");
        auto first = r.find_first_not_of(" \t\n\v\f\r");
        if (first == std::string::npos) return {};
        auto last = r.find_last_not_of(" \t\n\v\f\r");
        return r.substr(first, last - first + 1);
    }

private:
    std::string line_;
    std::size_t pos_ = 0;
};

std::string run_as_user() {
    const passwd* pw = ::getpwuid(::geteuid());
    return pw != nullptr ? pw->pw_name : "uid " + std::to_string(::geteuid());
}

// scmp_p in src/conf_includedir.c: per character, case-insensitive first, then by case; chars
// are signed, mosquitto does not call setlocale (so toupper maps a-z only).
bool mosquitto_path_less(const std::string& a, const std::string& b) {
    auto upper = [](signed char c) { return c >= 'a' && c <= 'z' ? c - 32 : int{c}; };
    std::size_t i = 0;
    for (; i < a.size() && i < b.size(); ++i) {
        auto ca = static_cast<signed char>(a[i]), cb = static_cast<signed char>(b[i]);
        if (upper(ca) != upper(cb)) return upper(ca) < upper(cb);
        if (ca != cb) return ca < cb;
    }
    return a.size() < b.size();
}

// config__get_dir_files: names longer than 5 characters that end in ".conf", as dir/name.
std::optional<std::vector<std::string>> include_dir_files(const std::string& dir) {
    DIR* dh = ::opendir(dir.c_str());
    if (dh == nullptr) return std::nullopt;
    std::vector<std::string> files;
    while (const dirent* de = ::readdir(dh)) {
        std::string name = de->d_name;
        if (name.size() > 5 && name.compare(name.size() - 5, 5, ".conf") == 0) files.push_back(dir + "/" + name);
    }
    ::closedir(dh);
    std::sort(files.begin(), files.end(), mosquitto_path_less);
    return files;
}

class reader {
public:
    explicit reader(conf_state& state) : s_(state) {}

    // config__read_file: `level` 0 for a -c file, 1 for an include_dir file.
    void read_file(const std::string& path, int level) {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            refuse({path, 0, "-c/include_dir"},
                   std::string("cannot read this mosquitto configuration file as user ") + run_as_user() + ": " +
                       std::strerror(errno) + "; DeviceGate must read what mosquitto read, so make it readable");
            return;
        }
        int cur = -1;  // src/conf.c: cur_listener starts at the default listener in every file
        std::string line;
        int number = 0;
        while (std::getline(in, line)) {
            ++number;
            line = line.substr(0, line.find('\0'));  // fgets + strlen
            if (line.empty() || line[0] == '#' || line[0] == '\r') continue;
            while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
            words w(line);
            auto key = w.next();
            if (!key) continue;
            apply(path, number, level, *key, w, cur);
        }
    }

private:
    void refuse(site at, std::string why, bool bypass = true) {
        s_.findings.push_back({at.file, at.line, at.text, std::move(why), bypass});
    }

    listener_conf& listener(int cur) { return cur < 0 ? s_.default_listener : s_.listeners[static_cast<size_t>(cur)]; }

    // conf__set_cur_security_options: per listener only while per_listener_settings is true.
    security_opts& security(int cur) {
        s_.security_touched = true;
        return s_.per_listener ? listener(cur).security : s_.global;
    }

    // conf__parse_bool: exactly "true"/"1" or "false"/"0"; anything else stops mosquitto.
    std::optional<bool> parse_bool(const site& at, const std::optional<std::string>& value) {
        if (value == "true" || value == "1") return true;
        if (value == "false" || value == "0") return false;
        refuse(at, "mosquitto 2.0.11 accepts only true, false, 1 or 0 here (conf__parse_bool)");
        return std::nullopt;
    }

    void apply(const std::string& file, int number, int level, const std::string& key, words& w, int& cur);
    void apply_listener_setting(const site& at, const std::string& key, words& w, listener_conf& l);
    void apply_security_setting(const site& at, const std::string& key, words& w, int cur);

    conf_state& s_;
};

const std::set<std::string, std::less<>> listener_keys = {
    "certfile", "keyfile", "psk_hint", "require_certificate", "use_identity_as_username",
    "use_subject_as_username", "protocol", "cafile", "capath", "bind_interface", "tls_engine", "tls_keyform",
    "tls_engine_kpass_sha1", "ciphers", "ciphers_tls1.3", "dhparamfile", "crlfile", "use_username_as_clientid",
    "max_connections", "maximum_qos", "max_qos", "mount_point", "socket_domain"};
const std::set<std::string, std::less<>> security_keys = {"acl_file", "password_file", "psk_file", "allow_anonymous",
                                                          "plugin", "auth_plugin"};

void reader::apply(const std::string& file, int number, int level, const std::string& key, words& w, int& cur) {
    site at{file, number, key};
    if (key == "listener") {
        s_.local_only = false;
        s_.listeners.push_back({});
        s_.listeners.back().declared = {file, number, "listener " + w.rest_trimmed()};
        cur = static_cast<int>(s_.listeners.size()) - 1;
    } else if (key == "port" || key == "bind_address") {
        s_.local_only = false;  // both configure the default listener (config__parse_args)
        s_.default_listener.in_use = true;
        s_.default_listener.declared = {file, number, key + " " + w.rest_trimmed()};
    } else if (key == "per_listener_settings") {
        auto value = w.next();
        at.text += " " + value.value_or("");
        auto v = parse_bool(at, value);
        if (v && *v && s_.security_touched) {
            refuse(at, "must come before any security setting (mosquitto refuses to start)");
        }
        if (v) s_.per_listener = *v;
        s_.per_listener_site = at;
    } else if (key == "include_dir") {
        if (level != 0) return;  // src/conf.c: only from the main config file
        auto dir = w.rest().value_or("");
        auto files = include_dir_files(dir);
        if (!files) return refuse(at, "cannot open the directory \"" + dir + "\" as user " + run_as_user());
        for (const auto& f : *files) read_file(f, level + 1);
    } else if (key == "persistence_location") {
        s_.persistence_location = w.rest_trimmed();
    } else if (key == "connection") {
        refuse(at,
               "a bridge: mosquitto_acl_check (src/security.c) lets every bridge message through without asking "
               "DeviceGate; the remote broker can write and read device topics",
               false);
    } else if (key == "allow_zero_length_clientid") {
        auto value = w.next();
        at.text += " " + value.value_or("");
        auto v = parse_bool(at, value);
        security(cur);  // conf__set_cur_security_options
        if (v && s_.per_listener && cur < 0) {
            s_.default_listener.zero_length_clientid_off = *v ? std::nullopt : std::optional<site>(at);
        }
    } else if (security_keys.count(key) != 0) {
        apply_security_setting(at, key, w, cur);
    } else if (listener_keys.count(key) != 0) {
        if (key == "cafile") listener(cur).cafile = w.rest_trimmed();
        if (key == "capath") listener(cur).capath = w.rest_trimmed();
        apply_listener_setting(at, key, w, listener(cur));
    }
}

void reader::apply_listener_setting(const site& at_key, const std::string& key, words& w, listener_conf& l) {
    site at = at_key;
    auto value = w.next();
    at.text += " " + value.value_or("");
    bool sets_default = true;  // the fields config__parse_args looks at to create the default listener
    if (key == "certfile") l.certfile = at;
    else if (key == "keyfile") l.keyfile = at;
    else if (key == "psk_hint") l.psk_hint = at;
    else if (key == "protocol") l.websockets = sets_default = value == "websockets";
    else if (key == "max_connections") sets_default = value && std::atoi(value->c_str()) >= 0;
    else if (key == "maximum_qos" || key == "max_qos") sets_default = value != "2";
    else if (key == "require_certificate") {
        auto v = parse_bool(at, value);
        l.require_certificate = v.value_or(false);
        l.require_certificate_site = at;
        sets_default = l.require_certificate;
    } else if (key == "use_identity_as_username" || key == "use_subject_as_username") {
        auto v = parse_bool(at, value);
        auto& slot = key == "use_identity_as_username" ? l.use_identity : l.use_subject;
        slot = v.value_or(false) ? std::optional<site>(at) : std::nullopt;
        sets_default = slot.has_value();
    }
    if (&l == &s_.default_listener && sets_default) {
        l.in_use = true;
        if (l.declared.file.empty()) l.declared = at;
    }
}

void reader::apply_security_setting(const site& at_key, const std::string& key, words& w, int cur) {
    site at = at_key;
    security_opts& sec = security(cur);
    bool on_default_listener = s_.per_listener && cur < 0;
    if (key == "allow_anonymous") {
        auto value = w.next();
        at.text += " " + value.value_or("");
        if (auto v = parse_bool(at, value)) sec.allow_anonymous = *v ? 1 : 0;
        sec.allow_anonymous_site = at;
        return;  // allow_anonymous alone does not create the default listener
    }
    if (key == "plugin" || key == "auth_plugin") {
        sec.plugins.emplace_back(at, w.rest_trimmed());
    } else if (key == "password_file") {
        sec.password_file.push_back(at);
    } else if (key == "psk_file") {
        sec.psk_file.push_back(at);
    } else {
        sec.acl_file.push_back(at);
        return;  // acl_file alone does not create the default listener
    }
    if (on_default_listener) {
        s_.default_listener.in_use = true;
        if (s_.default_listener.declared.file.empty()) s_.default_listener.declared = at;
    }
}

// What config__read does after each -c file: mosquitto's defaults for allow_anonymous.
void after_config_file(conf_state& s, const std::string& path) {
    if (s.local_only) {
        s.global.allow_anonymous = 1;
        s.global.allow_anonymous_site = {path, 0, "allow_anonymous"};
    } else if (s.per_listener) {
        for (auto& l : s.listeners) {
            if (l.security.allow_anonymous == -1) l.security.allow_anonymous = 0;
        }
    } else if (s.global.allow_anonymous == -1) {
        s.global.allow_anonymous = 0;
    }
}

bool same_file(const std::string& a, const std::string& b) {
    std::error_code ec;
    return !a.empty() && !b.empty() && std::filesystem::equivalent(a, b, ec) && !ec;
}

std::string listener_name(const listener_conf& l) {
    std::string name = l.declared.file.empty() || l.declared.text.rfind("listener", 0) != 0
                           ? "the default listener (port 1883, created by " + l.declared.text + ")"
                           : l.declared.text;
    if (l.websockets) name += " (websockets)";
    return name;
}

class evaluator {
public:
    evaluator(const conf_state& s, const listener_check_options& o, std::vector<listener_finding>& out)
        : s_(s), o_(o), out_(out) {}

    void listener(const listener_conf& l) {
        name_ = listener_name(l);
        transport(l);
        security(s_.per_listener ? l.security : s_.global, l.declared);
    }

private:
    void refuse(const site& at, const std::string& why, bool bypass = true) {
        out_.push_back({at.file, at.line, at.text, why + " [" + name_ + "]", bypass});
    }

    void transport(const listener_conf& l) {
        if (l.psk_hint) {
            refuse(*l.psk_hint, "TLS-PSK: clients authenticate with a pre-shared key and present no certificate");
        } else if (!l.certfile || !l.keyfile) {
            refuse({l.declared.file, l.declared.line, l.certfile ? "keyfile" : "certfile"},
                   "no TLS (mosquitto needs certfile and keyfile): clients connect without a certificate");
        }
        if (!l.require_certificate) {
            site at = l.require_certificate_site.value_or(site{l.declared.file, l.declared.line, "require_certificate"});
            refuse(at, "require_certificate is not true, so mosquitto admits TLS clients without a certificate; "
                       "set require_certificate true");
        }
        for (const auto& s : {l.use_identity, l.use_subject}) {
            if (s) {
                refuse(*s, "mosquitto 2.0 skips MOSQ_EVT_BASIC_AUTH on such a listener and admits the client by its "
                           "certificate alone (src/handle_connect.c); leave it off, DeviceGate sets the username");
            }
        }
    }

    void security(const security_opts& sec, const site& declared) {
        plugins(sec, declared);
        if (sec.allow_anonymous != 0) {
            site at = sec.allow_anonymous_site.file.empty() ? site{declared.file, declared.line, "allow_anonymous"}
                                                            : sec.allow_anonymous_site;
            refuse(at, sec.allow_anonymous == 1
                           ? "anonymous clients are allowed; set allow_anonymous false"
                           : "allow_anonymous is unset, which mosquitto 2.0.11 treats as true on the default "
                             "listener with per_listener_settings true; set allow_anonymous false");
        }
        for (const auto& at : sec.password_file) {
            refuse(at, "mosquitto's own password check admits clients by username and password");
        }
        for (const auto& at : sec.psk_file) refuse(at, "mosquitto's own PSK check admits clients without a certificate");
        for (const auto& at : sec.acl_file) {
            refuse(at, "mosquitto's own ACL may grant topics; use plugin_opt_acl_pattern");
        }
    }

    void plugins(const security_opts& sec, const site& declared) {
        auto is_gate = [&](const auto& p) { return same_file(p.second, o_.plugin_path); };
        auto gate = std::find_if(sec.plugins.begin(), sec.plugins.end(), is_gate);
        if (gate == sec.plugins.end()) {
            std::string why = "DeviceGate (" + o_.plugin_path + ") is not loaded for this listener";
            if (s_.per_listener) {
                why += ": per_listener_settings true (" + s_.per_listener_site.file + ":" +
                       std::to_string(s_.per_listener_site.line) +
                       ") gives each listener its own plugin lines, so add DeviceGate's plugin line after this "
                       "listener line, or set per_listener_settings false";
            }
            refuse({declared.file, declared.line, "plugin"}, why);
            return;
        }
        for (auto p = sec.plugins.begin(); p != sec.plugins.end(); ++p) {
            if (p == gate || is_gate(*p)) continue;
            if (p < gate) {
                refuse(p->first, "this plugin is loaded before DeviceGate, so its callbacks answer first "
                                 "(src/security.c stops at the first answer that is not DEFER)");
            } else {
                refuse(p->first,
                       "another plugin after DeviceGate: it must not handle MOSQ_EVT_EXT_AUTH_START (MQTT v5 "
                       "enhanced auth skips MOSQ_EVT_BASIC_AUTH)",
                       false);
            }
        }
    }

    const conf_state& s_;
    const listener_check_options& o_;
    std::vector<listener_finding>& out_;
    std::string name_;
};

conf_state read_configs(const std::vector<std::string>& paths) {
    conf_state s;
    reader r(s);
    for (const auto& path : paths) {
        r.read_file(path, 0);
        after_config_file(s, path);
    }
    if (auto& l = s.default_listener; l.zero_length_clientid_off) {
        l.in_use = true;
        if (l.declared.file.empty()) l.declared = *l.zero_length_clientid_off;
    }
    return s;
}

std::vector<std::string> split_cmdline(const std::string& cmdline) {
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
    return args;
}

// The -c files of this process when `path` is one of them, else just `path`.
std::vector<std::string> config_files_of_this_process(const std::string& path) {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    auto paths = config_paths_from_cmdline(
        std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
    if (std::find(paths.begin(), paths.end(), path) != paths.end()) return paths;
    return {path};
}

}  // namespace

std::vector<listener_finding> check_mosquitto_configs(const std::vector<std::string>& paths,
                                                      const listener_check_options& options) {
    conf_state s = read_configs(paths);
    std::vector<listener_finding> out = s.findings;
    evaluator e(s, options, out);
    if (s.listeners.empty() && !s.default_listener.in_use) {
        out.push_back({paths.empty() ? "" : paths.front(), 0, "listener",
                       "no listener: mosquitto 2.0.11 starts in local-only mode on plain TCP 127.0.0.1:1883 and "
                       "::1:1883 (listeners__start_local_only, src/mosquitto.c)",
                       true});
    }
    if (s.default_listener.in_use) e.listener(s.default_listener);
    for (const auto& l : s.listeners) e.listener(l);
    // With per_listener_settings false a global setting is reported once, not once per listener.
    std::set<std::tuple<std::string, int, std::string>> seen;
    std::vector<listener_finding> unique;
    for (auto& f : out) {
        if (seen.emplace(f.file, f.line, f.setting).second) unique.push_back(std::move(f));
    }
    return unique;
}

std::vector<listener_tls> listener_tls_settings(const std::vector<std::string>& paths) {
    conf_state s = read_configs(paths);
    std::vector<listener_tls> out;
    auto add = [&](const listener_conf& l) { out.push_back({listener_name(l), l.cafile, l.capath, l.websockets}); };
    if (s.default_listener.in_use) add(s.default_listener);
    for (const auto& l : s.listeners) add(l);
    return out;
}

std::vector<listener_tls> listener_tls_settings(const std::string& path) {
    return listener_tls_settings(config_files_of_this_process(path));
}

std::vector<listener_finding> check_mosquitto_config(const std::string& path) {
    return check_mosquitto_configs(config_files_of_this_process(path), {own_module_path()});
}

std::string persistence_location(const std::string& path) {
    return read_configs(config_files_of_this_process(path)).persistence_location;
}

std::vector<std::string> config_paths_from_cmdline(const std::string& cmdline) {
    auto args = split_cmdline(cmdline);
    std::vector<std::string> paths;
    // config__parse_args (src/conf.c): each -c file is read in turn into the same configuration.
    for (std::size_t i = 1; i + 1 < args.size(); ++i) {
        if (args[i] == "-c" || args[i] == "--config-file") paths.push_back(args[++i]);
        else if (args[i] == "-p" || args[i] == "--port") ++i;
    }
    return paths;
}

std::string config_path_from_cmdline(const std::string& cmdline) {
    auto paths = config_paths_from_cmdline(cmdline);
    return paths.empty() ? std::string() : paths.back();
}

std::string own_module_path() {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&own_module_path), &info) != 0 && info.dli_fname != nullptr) {
        return info.dli_fname;
    }
    return {};
}

}  // namespace devicegate
