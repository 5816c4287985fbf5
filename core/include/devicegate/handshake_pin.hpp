#pragma once
// Whether mosquitto's own TLS handshake has already verified a device certificate's signature
// with the pinned CA's key, so that the plugin need not verify it again (issue 13).
//
// The plugin API hands the plugin only the leaf (mosquitto_client_certificate), not the chain
// the handshake verified. The handshake verified the leaf's signature with the key of the
// certificate that OpenSSL chose as the leaf's issuer. OpenSSL 3 chooses it from the
// listener's trust store first (X509_V_FLAG_TRUSTED_FIRST, in the built-in "default"
// verification parameters that every TLS verification inherits), among the store's
// certificates whose subject is the leaf's issuer name and whose key id matches the leaf's
// authority key id (x509_vfy.c build_chain, x509_lu.c X509_STORE_CTX_get1_issuer). So when
// the store holds the pinned CA as its only certificate with that subject, every leaf that
// passes the plugin's pinning (issuer name and authority key id of the pinned CA) was
// verified against the pinned CA's key, or the handshake failed. A twin with the same name
// and key id but another key, sent by the client in its chain, is never chosen.
//
// mosquitto 2.0.11 fills a listener's store from `cafile` and `capath` once, when the
// listener starts (after the plugin's init); a SIGHUP reloads only certfile, keyfile and
// crlfile. `capath` is read on demand, so a listener with one is never proven; nor is a
// websockets listener (libwebsockets builds its own TLS context). Every name a cafile is
// resolved through (each directory and symlink of its path as given and of its canonical
// path: device, inode, type; symlinks and the file also size and times) is kept, and confirm()
// compares them once the listeners run: a file replaced, rewritten or re-pointed in between,
// even if put back, is not proven. The configuration itself is read after mosquitto read it,
// as the listener check reads it; a change in between is not seen (docs/security.md).
#include "devicegate/listener_check.hpp"

#include <openssl/x509.h>
#include <sys/stat.h>

#include <string>
#include <vector>

namespace devicegate {

class handshake_pin {
public:
    /// Reads every listener's cafile the way OpenSSL loads it (X509_STORE_load_file). Never
    /// throws: what cannot be proven is a reason in why_not().
    static handshake_pin evaluate(const std::vector<listener_tls>& listeners, X509* ca);
    /// Not proven, for `why` (e.g. an option that turns the proof off).
    static handshake_pin refused(std::string why);

    /// Proven from the files as read by evaluate().
    bool proven() const noexcept { return why_not_.empty(); }
    /// Why it is not proven ("" when it is).
    const std::string& why_not() const noexcept { return why_not_; }
    /// After mosquitto started its listeners: still proven if every cafile is the file that
    /// evaluate() read; otherwise not proven any more (why_not() names the file).
    bool confirm();

private:
    struct file_stamp {
        std::string path;
        struct stat st {};
        bool follow = false;  // stat (the file a cafile names), else lstat (a name on the way)
    };
    std::vector<file_stamp> files_;
    std::string why_not_;
};

}  // namespace devicegate
