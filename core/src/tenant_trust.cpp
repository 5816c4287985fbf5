#include "devicegate/tenant_trust.hpp"

#include "devicegate/device_id.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>

#include <algorithm>
#include <limits>

namespace devicegate {

std::string_view to_string(ca_role role) noexcept {
    switch (role) {
        case ca_role::sub_ca: return "tenant Sub-CA";
        case ca_role::ica: return "ICA";
        case ca_role::root: return "Root";
    }
    return "?";
}

namespace {

x509_ptr load_one(const std::string& path, std::string_view what) {
    auto certs = parse_certificates(read_file(path, max_certificate_file_bytes), path);
    if (certs.size() != 1) {
        throw pki_error(path + ": expected exactly one " + std::string(what) + " certificate, found " +
                        std::to_string(certs.size()));
    }
    if (X509_check_ca(certs[0].get()) == 0) {
        throw pki_error(path + ": " + std::string(what) + " certificate " + subject_line(certs[0].get()) +
                        " is not a CA certificate");
    }
    return std::move(certs[0]);
}

std::string asn1_string_utf8(const ASN1_STRING* s, bool& ok) {
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, s);
    ok = len >= 0;
    if (!ok) return {};
    std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len));
    OPENSSL_free(utf8);
    return out;
}

bool has_resources(X509* x) {
    return X509_get_ext_by_NID(x, NID_sbgp_ipAddrBlock, -1) >= 0 ||
           X509_get_ext_by_NID(x, NID_sbgp_autonomousSysNum, -1) >= 0;
}

bool has_dns_san(X509* leaf) {
    general_names_ptr sans(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
        if (sk_GENERAL_NAME_value(sans.get(), i)->type == GEN_DNS) return true;
    }
    return false;
}

// x509_vfy.c check_curve: 1 fine, 0 an EC key with explicit curve parameters, -1 no usable key.
int key_check(X509* x) {
    EVP_PKEY* key = X509_get0_pubkey(x);
    if (key == nullptr) return -1;
    if (EVP_PKEY_get_id(key) != EVP_PKEY_EC) return 1;
    int explicit_params = 0;
    if (EVP_PKEY_get_int_param(key, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, &explicit_params) != 1) return -1;
    return explicit_params == 0 ? 1 : 0;
}

}  // namespace

std::shared_ptr<const tenant_trust> tenant_trust::load(const std::string& sub_ca_file, const std::string& ica_file,
                                                       const std::string& root_file) {
    std::shared_ptr<tenant_trust> t(new tenant_trust());
    t->sub_ca_ = load_one(sub_ca_file, "tenant Sub-CA");
    t->ica_ = load_one(ica_file, "ICA");
    t->root_ = load_one(root_file, "Root");
    if (X509_check_issued(t->root_.get(), t->root_.get()) != X509_V_OK) {
        throw pki_error(root_file + ": the Root certificate " + subject_line(t->root_.get()) + " is not self-issued");
    }
    if (X509_check_issued(t->ica_.get(), t->sub_ca_.get()) != X509_V_OK) {
        throw pki_error(sub_ca_file + ": the tenant Sub-CA " + subject_line(t->sub_ca_.get()) +
                        " was not issued by the ICA " + subject_line(t->ica_.get()));
    }
    if (X509_check_issued(t->root_.get(), t->ica_.get()) != X509_V_OK) {
        throw pki_error(ica_file + ": the ICA " + subject_line(t->ica_.get()) + " was not issued by the Root " +
                        subject_line(t->root_.get()));
    }
    t->serial_[0] = make_serial_key(X509_get0_serialNumber(t->sub_ca_.get()));
    t->serial_[1] = make_serial_key(X509_get0_serialNumber(t->ica_.get()));
    t->serial_[2] = make_serial_key(X509_get0_serialNumber(t->root_.get()));

    t->store_.reset(X509_STORE_new());
    t->untrusted_.reset(sk_X509_new_null());
    if (!t->store_ || !t->untrusted_ || X509_STORE_add_cert(t->store_.get(), t->root_.get()) != 1 ||
        !sk_X509_push(t->untrusted_.get(), t->sub_ca_.get())) {
        throw pki_error("cannot build the trust store: " + take_openssl_errors());
    }
    X509_up_ref(t->sub_ca_.get());
    if (!sk_X509_push(t->untrusted_.get(), t->ica_.get())) throw pki_error("out of memory");
    X509_up_ref(t->ica_.get());
    // Times are checked per connect with the configured skew (check_times), not here.
    X509_STORE_set_flags(t->store_.get(), X509_V_FLAG_NO_CHECK_TIME);

    // The configured chain must verify by itself (signatures, CA constraints).
    x509_store_ctx_ptr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), t->store_.get(), t->sub_ca_.get(), t->untrusted_.get()) != 1) {
        throw pki_error("cannot build a verification context: " + take_openssl_errors());
    }
    if (X509_verify_cert(ctx.get()) != 1) {
        throw pki_error(sub_ca_file + ": the chain Sub-CA -> ICA -> Root does not verify: " +
                        X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
    }
    t->check_constant_chain(sub_ca_file, ica_file, root_file);
    t->chain_not_before_ = 0;
    t->chain_not_after_ = std::numeric_limits<std::time_t>::max();
    for (X509* ca : {t->sub_ca_.get(), t->ica_.get(), t->root_.get()}) {
        t->chain_not_before_ = std::max(t->chain_not_before_, to_time_t(X509_get0_notBefore(ca)));
        t->chain_not_after_ = std::min(t->chain_not_after_, to_time_t(X509_get0_notAfter(ca)));
    }
    return t;
}

// The load-time X509_verify_cert above verified the signatures Sub-CA <- ICA <- Root, the
// Root as trust anchor, every CA's critical extensions, proxy flags and keys, and the Root's
// and ICA's name constraints on the Sub-CA. It saw the Sub-CA at depth 0; per device it sat
// at depth 1. What that shift changes (x509_vfy.c check_extensions) is checked here, so that
// a leaf that passes check_leaf() would have passed X509_verify_cert over the whole chain.
void tenant_trust::check_constant_chain(const std::string& sub_ca_file, const std::string& ica_file,
                                        const std::string& root_file) {
    // Intermediates must be CAs in the strict sense (basicConstraints CA:TRUE).
    if (X509_check_ca(sub_ca_.get()) != 1) {
        throw pki_error(sub_ca_file + ": the tenant Sub-CA " + subject_line(sub_ca_.get()) +
                        " has no basicConstraints CA:TRUE");
    }
    if (X509_check_ca(ica_.get()) != 1) {
        throw pki_error(ica_file + ": the ICA " + subject_line(ica_.get()) + " has no basicConstraints CA:TRUE");
    }
    // (A keyUsage without keyCertSign already failed X509_check_ca in load_one.)
    // Path length: non-self-issued CAs below each CA, not counting the leaf.
    X509* chain[] = {sub_ca_.get(), ica_.get(), root_.get()};
    const std::string* files[] = {&sub_ca_file, &ica_file, &root_file};
    long below = 0;
    for (int i = 1; i < 3; ++i) {
        if ((X509_get_extension_flags(chain[i - 1]) & EXFLAG_SI) == 0) ++below;
        const long pathlen = X509_get_pathlen(chain[i]);
        if (pathlen != -1 && below > pathlen) {
            throw pki_error(*files[i] + ": pathLenConstraint " + std::to_string(pathlen) + " of " +
                            subject_line(chain[i]) + " leaves no room for the tenant Sub-CA's devices");
        }
    }
    for (X509* ca : chain) {
        int critical = 0;
        NAME_CONSTRAINTS* nc = static_cast<NAME_CONSTRAINTS*>(X509_get_ext_d2i(ca, NID_name_constraints, &critical, nullptr));
        if (nc != nullptr) constraints_.emplace_back(nc);
        else if (critical != -1) throw pki_error(subject_line(ca) + ": unreadable nameConstraints");
        if (has_resources(ca)) chain_has_resources_ = true;
    }
    sub_ca_key_ = X509_get0_pubkey(sub_ca_.get());
    if (sub_ca_key_ == nullptr) throw pki_error(sub_ca_file + ": the tenant Sub-CA's public key cannot be decoded");
}

X509* tenant_trust::certificate(ca_role role) const noexcept {
    switch (role) {
        case ca_role::sub_ca: return sub_ca_.get();
        case ca_role::ica: return ica_.get();
        case ca_role::root: return root_.get();
    }
    return nullptr;
}

const serial_key& tenant_trust::serial(ca_role role) const noexcept { return serial_[static_cast<int>(role)]; }

reason extract_device_id(X509* leaf, std::string& device_id, std::string& detail) {
    X509_NAME* subject = X509_get_subject_name(leaf);
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0) {
        detail = "certificate has no subject CN";
        return reason::bad_device_id;
    }
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
        detail = "certificate has more than one subject CN";
        return reason::bad_device_id;
    }
    bool ok = false;
    std::string cn = asn1_string_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)), ok);
    if (!ok || !is_safe_device_id(cn)) {
        detail = "subject CN \"" + cn + "\" is not a safe device id ([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})";
        return reason::bad_device_id;
    }
    general_names_ptr sans(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
        const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), i);
        if (name->type != GEN_DNS) continue;
        const ASN1_IA5STRING* dns = name->d.dNSName;
        std::string_view value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                               static_cast<std::size_t>(ASN1_STRING_length(dns)));
        if (value != cn) {
            detail = "DNS SAN \"" + std::string(value) + "\" differs from the subject CN \"" + cn + "\"";
            return reason::bad_device_id;
        }
    }
    device_id = std::move(cn);
    return reason::ok;
}

reason check_client_auth_eku(X509* leaf, std::string& detail) {
    // OpenSSL decoded the extension once when it cached the certificate's extensions
    // (X509_get_extension_flags; the handshake did): no second decode per connect. Only when
    // that cache was filled (EXFLAG_SET: it is not when OpenSSL could not take the
    // certificate's lock) and the certificate is valid; otherwise the extension is decoded
    // here, to name the cause. check_pinning() refuses EXFLAG_INVALID before this runs; the
    // decoding stays for other callers.
    const std::uint32_t flags = X509_get_extension_flags(leaf);
    if ((flags & EXFLAG_SET) != 0 && (flags & EXFLAG_INVALID) == 0) {
        if ((flags & EXFLAG_XKUSAGE) == 0) return reason::ok;  // no extension: any use (RFC 5280 4.2.1.12)
        if ((X509_get_extended_key_usage(leaf) & (XKU_SSL_CLIENT | XKU_ANYEKU)) != 0) return reason::ok;
        detail = "extendedKeyUsage does not include clientAuth";
        return reason::wrong_eku;
    }
    int critical = 0;
    eku_ptr eku(static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(leaf, NID_ext_key_usage, &critical, nullptr)));
    if (!eku) {
        if (critical == -1) return reason::ok;  // no extension: any use is allowed (RFC 5280 4.2.1.12)
        detail = "extendedKeyUsage extension cannot be decoded";
        return reason::wrong_eku;
    }
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
        int nid = OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i));
        if (nid == NID_client_auth || nid == NID_anyExtendedKeyUsage) return reason::ok;
    }
    detail = "extendedKeyUsage does not include clientAuth";
    return reason::wrong_eku;
}

reason tenant_trust::check_pinning(X509* leaf, std::string& detail) const {
    // An extension OpenSSL cannot decode, a duplicate of one it caches, or a combination RFC
    // 5280 or 3820 forbids. OpenSSL's issuer check below fails on such a certificate too, which
    // would be reported as another issuer.
    if ((X509_get_extension_flags(leaf) & EXFLAG_INVALID) != 0) {
        detail = X509_verify_cert_error_string(X509_V_ERR_INVALID_EXTENSION);
        return reason::chain_invalid;
    }
    if (X509_check_issued(leaf, leaf) == X509_V_OK) {
        detail = "self-issued certificate " + subject_line(leaf);
        return reason::self_signed;
    }
    // Name, authority key id against the Sub-CA's subject key id, the Sub-CA's keyUsage
    // (keyCertSign). A twin with the same name and key id passes this; its signature does not.
    if (X509_check_issued(sub_ca_.get(), leaf) != X509_V_OK) {
        char issuer[256];
        X509_NAME_oneline(X509_get_issuer_name(leaf), issuer, sizeof issuer);
        detail = std::string("issued by ") + issuer + ", not by this tenant's Sub-CA";
        return reason::wrong_issuer;
    }
    if (X509_check_ca(leaf) != 0) {
        detail = "the certificate is a CA certificate";
        return reason::not_end_entity;
    }
    return check_client_auth_eku(leaf, detail);
}

// What X509_verify_cert checks at depth 0 of leaf -> Sub-CA -> ICA -> Root (OpenSSL 3.0
// crypto/x509/x509_vfy.c: check_extensions, check_curve, internal_verify,
// check_name_constraints); everything above depth 0 is constant and checked at load.
reason tenant_trust::check_leaf(X509* leaf, leaf_signature signature, std::string& detail) const {
    auto refuse = [&](int error) {
        detail = X509_verify_cert_error_string(error);
        return reason::chain_invalid;
    };
    const std::uint32_t flags = X509_get_extension_flags(leaf);
    // check_pinning() refused these already; kept as defence in depth.
    if ((flags & EXFLAG_INVALID) != 0) return refuse(X509_V_ERR_INVALID_EXTENSION);
    if ((flags & EXFLAG_CRITICAL) != 0) return refuse(X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION);
    if ((flags & EXFLAG_PROXY) != 0) return refuse(X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED);
    switch (key_check(leaf)) {
        case -1: return refuse(X509_V_ERR_UNSPECIFIED);
        case 0: return refuse(X509_V_ERR_EC_KEY_EXPLICIT_PARAMS);
        default: break;
    }
    // X509_verify also refuses a signatureAlgorithm that differs from the one inside the
    // signed part (the same call internal_verify makes). check_pinning() passed, so a
    // handshake proven for this Sub-CA made this very call with this key.
    if (signature == leaf_signature::verify && X509_verify(leaf, sub_ca_key_) != 1) {
        ERR_clear_error();
        return refuse(X509_V_ERR_CERT_SIGNATURE_FAILURE);
    }
    for (const auto& nc : constraints_) {
        int rv = NAME_CONSTRAINTS_check(leaf, nc.get());
        // OpenSSL 3.0 also applies DNS constraints to the CN of a leaf without a DNS SAN.
        if (rv == X509_V_OK && !has_dns_san(leaf)) rv = NAME_CONSTRAINTS_check_CN(leaf, nc.get());
        if (rv != X509_V_OK) return refuse(rv);
    }
    return reason::ok;
}

reason tenant_trust::check_chain_full(X509* leaf, std::string& detail) const {
    ERR_clear_error();
    x509_store_ctx_ptr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), leaf, untrusted_.get()) != 1) {
        detail = "cannot create a verification context: " + take_openssl_errors();
        return reason::internal_error;
    }
    if (X509_verify_cert(ctx.get()) != 1) {
        detail = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
        ERR_clear_error();
        return reason::chain_invalid;
    }
    // Pinning: the verified path must run through exactly our Sub-CA and ICA (compared as
    // certificates, not names) to our Root.
    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
    if (sk_X509_num(chain) != 4 || X509_cmp(sk_X509_value(chain, 1), sub_ca_.get()) != 0 ||
        X509_cmp(sk_X509_value(chain, 2), ica_.get()) != 0 || X509_cmp(sk_X509_value(chain, 3), root_.get()) != 0) {
        detail = "verified path is not leaf -> tenant Sub-CA -> ICA -> Root";
        return reason::wrong_issuer;
    }
    return reason::ok;
}

verify_outcome tenant_trust::verify(X509* leaf, leaf_signature signature) const {
    verify_outcome out;
    out.serial_hex = serial_hex(X509_get0_serialNumber(leaf));
    if ((out.why = check_pinning(leaf, out.detail)) != reason::ok) return out;
    // RFC 3779 resources need the whole path (X509v3_addr_validate_path); rare enough
    // that such chains and leaves keep the full verification.
    const bool resources = chain_has_resources_ || has_resources(leaf);
    out.why = resources ? check_chain_full(leaf, out.detail) : check_leaf(leaf, signature, out.detail);
    if (out.why == reason::ok) finish(leaf, out);
    return out;
}

verify_outcome tenant_trust::verify_full(X509* leaf) const {
    verify_outcome out;
    out.serial_hex = serial_hex(X509_get0_serialNumber(leaf));
    if ((out.why = check_pinning(leaf, out.detail)) != reason::ok) return out;
    if ((out.why = check_chain_full(leaf, out.detail)) == reason::ok) finish(leaf, out);
    return out;
}

void tenant_trust::finish(X509* leaf, verify_outcome& out) const {
    verified_certificate cert;
    if ((out.why = extract_device_id(leaf, cert.device_id, out.detail)) != reason::ok) return;
    try {
        cert.not_before = to_time_t(X509_get0_notBefore(leaf));
        cert.not_after = to_time_t(X509_get0_notAfter(leaf));
    } catch (const pki_error&) {
        out.why = reason::bad_certificate;
        out.detail = "unreadable validity times";
        return;
    }
    cert.serial = make_serial_key(X509_get0_serialNumber(leaf));
    cert.serial_text = serial_spelling(cert.serial, out.serial_hex);
    out.cert = std::move(cert);
    out.why = reason::ok;
}

reason tenant_trust::check_times(const verified_certificate& cert, std::time_t now, std::chrono::seconds skew,
                                 std::string& detail) const {
    const std::time_t s = skew.count();
    if (now + s < cert.not_before) {
        detail = "notBefore is " + std::to_string(cert.not_before - now) + "s in the future";
        return reason::not_yet_valid;
    }
    if (now - s > cert.not_after) {
        detail = "notAfter was " + std::to_string(now - cert.not_after) + "s ago";
        return reason::expired;
    }
    if (now + s < chain_not_before_ || now - s > chain_not_after_) {
        detail = "a configured CA certificate is outside its validity period";
        return reason::ca_expired;
    }
    return reason::ok;
}

}  // namespace devicegate
