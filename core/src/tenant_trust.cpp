#include "devicegate/tenant_trust.hpp"

#include "devicegate/device_id.hpp"

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
    t->chain_not_before_ = 0;
    t->chain_not_after_ = std::numeric_limits<std::time_t>::max();
    for (X509* ca : {t->sub_ca_.get(), t->ica_.get(), t->root_.get()}) {
        t->chain_not_before_ = std::max(t->chain_not_before_, to_time_t(X509_get0_notBefore(ca)));
        t->chain_not_after_ = std::min(t->chain_not_after_, to_time_t(X509_get0_notAfter(ca)));
    }
    return t;
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

verify_outcome tenant_trust::verify(X509* leaf) const {
    verify_outcome out;
    out.serial_hex = serial_hex(X509_get0_serialNumber(leaf));
    if (X509_check_issued(leaf, leaf) == X509_V_OK) {
        out.why = reason::self_signed;
        out.detail = "self-issued certificate " + subject_line(leaf);
        return out;
    }
    if (X509_check_issued(sub_ca_.get(), leaf) != X509_V_OK) {
        out.why = reason::wrong_issuer;
        char issuer[256];
        X509_NAME_oneline(X509_get_issuer_name(leaf), issuer, sizeof issuer);
        out.detail = std::string("issued by ") + issuer + ", not by this tenant's Sub-CA";
        return out;
    }
    if (X509_check_ca(leaf) != 0) {
        out.why = reason::not_end_entity;
        out.detail = "the certificate is a CA certificate";
        return out;
    }
    if ((out.why = check_client_auth_eku(leaf, out.detail)) != reason::ok) return out;

    ERR_clear_error();
    x509_store_ctx_ptr ctx(X509_STORE_CTX_new());
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), leaf, untrusted_.get()) != 1) {
        out.why = reason::internal_error;
        out.detail = "cannot create a verification context: " + take_openssl_errors();
        return out;
    }
    if (X509_verify_cert(ctx.get()) != 1) {
        out.why = reason::chain_invalid;
        out.detail = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
        ERR_clear_error();
        return out;
    }
    // Pinning: the verified path must run through exactly our Sub-CA and ICA (compared as
    // certificates, not names) to our Root.
    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
    if (sk_X509_num(chain) != 4 || X509_cmp(sk_X509_value(chain, 1), sub_ca_.get()) != 0 ||
        X509_cmp(sk_X509_value(chain, 2), ica_.get()) != 0 || X509_cmp(sk_X509_value(chain, 3), root_.get()) != 0) {
        out.why = reason::wrong_issuer;
        out.detail = "verified path is not leaf -> tenant Sub-CA -> ICA -> Root";
        return out;
    }
    verified_certificate cert;
    if ((out.why = extract_device_id(leaf, cert.device_id, out.detail)) != reason::ok) return out;
    try {
        cert.not_before = to_time_t(X509_get0_notBefore(leaf));
        cert.not_after = to_time_t(X509_get0_notAfter(leaf));
    } catch (const pki_error&) {
        out.why = reason::bad_certificate;
        out.detail = "unreadable validity times";
        return out;
    }
    cert.serial = make_serial_key(X509_get0_serialNumber(leaf));
    cert.serial_hex = out.serial_hex;
    out.cert = std::move(cert);
    out.why = reason::ok;
    return out;
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
