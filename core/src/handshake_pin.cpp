#include "devicegate/handshake_pin.hpp"

#include "devicegate/ossl.hpp"
#include "devicegate/pki.hpp"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace devicegate {

namespace {

bool same_file(const struct stat& a, const struct stat& b) {
    if (a.st_dev != b.st_dev || a.st_ino != b.st_ino || a.st_mode != b.st_mode) return false;
    // A directory's times change whenever a file in it does; its identity is what matters.
    if (S_ISDIR(a.st_mode)) return true;
    return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec &&
           a.st_ctim.tv_sec == b.st_ctim.tv_sec && a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

// Every name the path is resolved through: each prefix of the path as given (lstat: a
// symlink re-pointed, even pointed back, is a new link or a new ctime) and of its canonical
// form (the directories and the file a symlink leads to), then the file itself.
std::vector<std::string> names_along(const std::string& path) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    std::error_code ec;
    const fs::path absolute = fs::absolute(path, ec), canonical = fs::canonical(path, ec);
    std::vector<fs::path> paths{absolute};
    if (canonical != absolute) paths.push_back(canonical);  // else the same names: stamped once
    for (const fs::path& full : paths) {
        if (full.empty()) continue;
        fs::path prefix;
        for (const auto& part : full) {
            prefix /= part;
            out.push_back(prefix.string());
        }
    }
    return out;
}

// OpenSSL's built-in verification parameters for a TLS server checking its clients: the
// "default" table entry, inherited by every X509_STORE_CTX, and "ssl_client" on top.
bool trusted_first() {
    unsigned long flags = 0;
    for (const char* name : {"default", "ssl_client"}) {
        if (const X509_VERIFY_PARAM* p = X509_VERIFY_PARAM_lookup(name)) flags |= X509_VERIFY_PARAM_get_flags(p);
    }
    return (flags & X509_V_FLAG_TRUSTED_FIRST) != 0;
}

// The certificates a listener's store holds with `ca`'s subject: "" when exactly `ca`.
std::string check_cafile(const listener_tls& l, X509* ca, struct stat& st) {
    const std::string in = " (" + l.name + ")";
    if (::stat(l.cafile.c_str(), &st) != 0) return "cannot stat cafile " + l.cafile + in + ": " + std::strerror(errno);
    if (!S_ISREG(st.st_mode)) return "cafile " + l.cafile + in + " is not a regular file";
    x509_store_ptr store(X509_STORE_new());
    if (!store || X509_STORE_load_file(store.get(), l.cafile.c_str()) != 1) {
        return "cannot load cafile " + l.cafile + in + ": " + take_openssl_errors();
    }
    struct stat after {};
    if (::stat(l.cafile.c_str(), &after) != 0 || !same_file(st, after)) return "cafile " + l.cafile + in + " changed while it was read";
    int named = 0;
    bool exact = false;
    STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(store.get());
    for (int i = 0; i < sk_X509_OBJECT_num(objects); ++i) {
        X509* x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i));
        if (x == nullptr || X509_NAME_cmp(X509_get_subject_name(x), X509_get_subject_name(ca)) != 0) continue;
        ++named;
        exact = exact || X509_cmp(x, ca) == 0;
    }
    if (!exact) return "cafile " + l.cafile + in + " does not hold " + subject_line(ca);
    if (named > 1) {
        return "cafile " + l.cafile + in + " holds " + std::to_string(named) + " certificates named " +
               subject_line(ca) + "; the handshake may choose another one";
    }
    return {};
}

}  // namespace

handshake_pin handshake_pin::refused(std::string why) {
    handshake_pin pin;
    pin.why_not_ = std::move(why);
    return pin;
}

handshake_pin handshake_pin::evaluate(const std::vector<listener_tls>& listeners, X509* ca) {
    if (ca == nullptr) return refused("no CA certificate");
    if (listeners.empty()) return refused("mosquitto opens no listener from its configuration");
    if (!trusted_first()) return refused("OpenSSL's default verification parameters lack X509_V_FLAG_TRUSTED_FIRST");
    handshake_pin pin;
    for (const auto& l : listeners) {
        if (l.websockets) return refused(l.name + " is a websockets listener; libwebsockets builds its own TLS context");
        if (!l.capath.empty()) return refused(l.name + " has capath " + l.capath + ", which OpenSSL reads on demand");
        if (l.cafile.empty()) return refused(l.name + " has no cafile");
        file_stamp target{l.cafile, {}, true};
        if (auto why = check_cafile(l, ca, target.st); !why.empty()) return refused(why);
        pin.files_.push_back(std::move(target));
        for (auto& name : names_along(l.cafile)) {
            file_stamp f{std::move(name), {}, false};
            if (::lstat(f.path.c_str(), &f.st) != 0) return refused("cannot stat " + f.path + ": " + std::strerror(errno));
            pin.files_.push_back(std::move(f));
        }
    }
    ERR_clear_error();
    return pin;
}

bool handshake_pin::confirm() {
    if (!proven()) return false;
    for (const auto& f : files_) {
        struct stat now {};
        const int rc = f.follow ? ::stat(f.path.c_str(), &now) : ::lstat(f.path.c_str(), &now);
        if (rc != 0 || !same_file(now, f.st)) {
            const bool file = f.follow || S_ISREG(f.st.st_mode);
            why_not_ = (file ? "cafile " + f.path : f.path + " (a directory or symlink on the way to a cafile)") +
                       " changed between the plugin's start and mosquitto's listeners' start";
            return false;
        }
    }
    return true;
}

}  // namespace devicegate
