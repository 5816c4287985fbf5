#include "devicegate/crl_set.hpp"

#include "devicegate/crl_der.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <atomic>
#include <limits>

namespace devicegate {

namespace {

// A printable, comparable form of an issuingDistributionPoint's distributionPoint name
// (RFC 5280 section 5.2.5): its general names, or the DER of a name relative to the issuer.
std::string point_name(const DIST_POINT_NAME* name) {
    if (name == nullptr) return "";
    bio_ptr out(BIO_new(BIO_s_mem()));
    if (!out) throw pki_error("out of memory");
    if (name->type == 0) {
        for (int i = 0; i < sk_GENERAL_NAME_num(name->name.fullname); ++i) {
            if (i > 0) BIO_puts(out.get(), ", ");
            GENERAL_NAME_print(out.get(), sk_GENERAL_NAME_value(name->name.fullname, i));
        }
    } else {
        unsigned char* der = nullptr;
        const int len = i2d_DIST_POINT_NAME(name, &der);
        openssl_bytes_ptr owned(der);
        BIO_puts(out.get(), "relative name DER ");
        for (int i = 0; i < len; ++i) BIO_printf(out.get(), "%02X", der[i]);
    }
    char* text = nullptr;
    const long n = BIO_get_mem_data(out.get(), &text);
    return n > 0 ? std::string(text, static_cast<std::size_t>(n)) : std::string("(empty name)");
}

// RFC 5280 sections 5.2.5 and 6.3.3 (b): the plugin keeps one CRL per CA and applies it as
// complete for the certificates it checks against it: device certificates (end entities:
// tenant_trust refuses a CA leaf) on the Sub-CA's CRL, the Sub-CA and the ICA (CAs) on the
// ICA's and the Root's. A CRL whose issuingDistributionPoint narrows it to other certificates,
// to some reasons, or makes it indirect, is not complete for them. Returns its distributionPoint
// name ("" if none): a CRL for one distribution point is accepted (step-ca names its own
// /1.0/crl there, authority/tls.go), but is a partition that crl_state keeps apart.
std::string check_distribution_point(X509_CRL* crl, ca_role role, const std::string& where) {
    int critical = 0;
    issuing_dist_point_ptr idp(
        static_cast<ISSUING_DIST_POINT*>(X509_CRL_get_ext_d2i(crl, NID_issuing_distribution_point, &critical, nullptr)));
    if (critical == -1) return "";
    if (critical == -2) throw pki_error(where + " has more than one issuingDistributionPoint extension");
    if (!idp) throw pki_error(where + " has an undecodable issuingDistributionPoint extension");
    const bool leaves = role == ca_role::sub_ca;
    auto refuse = [&](const char* field, const char* covers) {
        return pki_error(where + " is not complete for the " + (leaves ? "device" : "CA") +
                         " certificates checked against it: its issuingDistributionPoint has " + field + " (" + covers +
                         ")");
    };
    if (idp->onlyCA > 0 && leaves) throw refuse("onlyContainsCACerts", "it lists no end-entity certificate");
    if (idp->onlyuser > 0 && !leaves) throw refuse("onlyContainsUserCerts", "it lists no CA certificate");
    if (idp->onlyattr > 0) throw refuse("onlyContainsAttributeCerts", "it lists attribute certificates only");
    if (idp->onlysomereasons != nullptr) throw refuse("onlySomeReasons", "it lists some revocation reasons only");
    if (idp->indirectCRL > 0) throw refuse("indirectCRL", "entries may belong to other issuers");
    return point_name(idp->distpoint);
}

// A critical CRL extension the plugin does not process means the CRL cannot be used
// (RFC 5280 section 5.2). Handled: the CRL number, the authority key identifier and the
// issuingDistributionPoint (checked above); delta CRLs are refused by name before this.
void check_critical_extensions(X509_CRL* crl, const std::string& where) {
    for (int i = 0; i < X509_CRL_get_ext_count(crl); ++i) {
        X509_EXTENSION* ext = X509_CRL_get_ext(crl, i);
        if (X509_EXTENSION_get_critical(ext) <= 0) continue;
        const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        if (nid == NID_crl_number || nid == NID_authority_key_identifier || nid == NID_issuing_distribution_point) {
            continue;
        }
        char oid[80];
        OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(ext), 1);
        throw pki_error(where + " has a critical extension the plugin does not process (" + oid + ")");
    }
}

// An entry names the certificate it revokes by serial alone, unless a certificateIssuer
// extension (RFC 5280 section 5.3.3) makes it another issuer's: indirect, refused whether
// or not marked critical. Other critical entry extensions than the informational reason code,
// invalidity date and hold instruction (any entry counts as revoked) are not understood.
void check_entry_extensions(const X509_REVOKED* entry, const std::string& where) {
    const STACK_OF(X509_EXTENSION)* exts = X509_REVOKED_get0_extensions(entry);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) {
        X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts, i);
        const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        if (nid == NID_certificate_issuer) {
            throw pki_error(where + " is indirect: an entry carries a certificateIssuer extension");
        }
        if (X509_EXTENSION_get_critical(ext) <= 0 || nid == NID_crl_reason || nid == NID_invalidity_date ||
            nid == NID_hold_instruction_code) {
            continue;
        }
        char oid[80];
        OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(ext), 1);
        throw pki_error(where + " has an entry with a critical extension the plugin does not process (" + oid + ")");
    }
}

}  // namespace

verified_crl verify_crl(X509_CRL* crl, const tenant_trust& trust, const std::string& source) {
    verified_crl out;
    out.source = source;
    const X509_NAME* issuer_name = X509_CRL_get_issuer(crl);
    bool matched = false;
    for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) {
        X509* ca = trust.certificate(role);
        if (X509_NAME_cmp(issuer_name, X509_get_subject_name(ca)) != 0) continue;
        matched = true;
        EVP_PKEY* key = X509_get0_pubkey(ca);
        ERR_clear_error();
        if (key == nullptr || X509_CRL_verify(crl, key) != 1) {
            ERR_clear_error();
            throw pki_error(source + ": CRL signature does not verify against the " + std::string(to_string(role)) +
                            " " + subject_line(ca));
        }
        out.issuer = role;
        break;
    }
    if (!matched) {
        char name[256];
        X509_NAME_oneline(issuer_name, name, sizeof name);
        throw pki_error(source + ": CRL issuer " + name + " is none of the configured Sub-CA, ICA or Root");
    }
    if (X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0) {
        throw pki_error(source + ": delta CRLs are not supported");
    }
    const std::string where = source + ": the " + std::string(to_string(out.issuer)) + "'s CRL";
    out.distribution_point = check_distribution_point(crl, out.issuer, where);
    check_critical_extensions(crl, where);
    try {
        out.this_update = to_time_t(X509_CRL_get0_lastUpdate(crl));
        const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
        out.next_update = next != nullptr ? to_time_t(next) : 0;
    } catch (const pki_error&) {
        throw pki_error(source + ": CRL has unreadable thisUpdate/nextUpdate");
    }
    STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl);
    const int n = entries != nullptr ? sk_X509_REVOKED_num(entries) : 0;
    std::vector<serial_key> revoked;
    revoked.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        const X509_REVOKED* entry = sk_X509_REVOKED_value(entries, i);
        check_entry_extensions(entry, where);
        revoked.push_back(make_serial_key(X509_REVOKED_get0_serialNumber(entry)));
    }
    std::sort(revoked.begin(), revoked.end());
    revoked.erase(std::unique(revoked.begin(), revoked.end()), revoked.end());
    revoked.shrink_to_fit();  // duplicates removed: give back their room
    out.revoked = std::move(revoked);
    return out;
}

std::vector<verified_crl> load_crl_file(const std::string& path, const tenant_trust& trust) {
    const std::string data = read_file(path, max_crl_file_bytes);
    precheck_crl_signatures(data, path, trust);
    auto crls = parse_crls(data, path);
    std::vector<verified_crl> out;
    out.reserve(crls.size());
    for (auto& crl : crls) out.push_back(verify_crl(crl.get(), trust, path));
    return out;
}

crl_set::crl_set(std::vector<verified_crl> crls, const tenant_trust& trust,
                                         std::uint64_t generation, std::vector<missing_crl_source> missing)
    : crls_(std::move(crls)), missing_(std::move(missing)), generation_(generation) {
    auto listed = [](const verified_crl& crl, const serial_key& s) {
        return std::binary_search(crl.revoked.begin(), crl.revoked.end(), s);
    };
    std::vector<const verified_crl*> leaf_crls;
    for (auto& crl : crls_) {
        if (crl.issuer == ca_role::sub_ca) {
            leaf_crls.push_back(&crl);
        } else if (crl.issuer == ca_role::ica && listed(crl, trust.serial(ca_role::sub_ca))) {
            chain_revoked_ = true;
            chain_detail_ = "the tenant Sub-CA is revoked on the ICA's CRL " + crl.source;
        } else if (crl.issuer == ca_role::root && listed(crl, trust.serial(ca_role::ica))) {
            chain_revoked_ = true;
            chain_detail_ = "the ICA is revoked on the Root's CRL " + crl.source;
        }
    }
    // One sorted array for the hot path: the Sub-CA CRL's own (shared, not copied), or a merge
    // when several Sub-CA CRLs are given.
    if (leaf_crls.size() == 1) {
        revoked_leaves_ = leaf_crls.front()->revoked;
        return;
    }
    std::vector<serial_key> merged;
    for (const auto* crl : leaf_crls) merged.insert(merged.end(), crl->revoked.begin(), crl->revoked.end());
    std::sort(merged.begin(), merged.end());
    merged.erase(std::unique(merged.begin(), merged.end()), merged.end());
    revoked_leaves_ = std::move(merged);
}

std::uint32_t crl_set::next_instance() noexcept {
    static std::atomic<std::uint64_t> made{0};
    const std::uint64_t n = made.fetch_add(1, std::memory_order_relaxed) + 1;
    return n <= std::numeric_limits<std::uint32_t>::max() ? static_cast<std::uint32_t>(n) : 0;
}

crl_status crl_set::check(const serial_key& leaf, std::time_t now, std::chrono::seconds grace, stale_policy policy,
                          std::uint32_t* clear) const {
    if (chain_revoked_) return {reason::ca_revoked, nullptr, nullptr};
    // The binary search over a 100,000-serial array misses the cache on most of its ~17
    // probes: the largest part of a verify-cache hit (issue 13).
    if (clear == nullptr || instance_ == 0 || *clear != instance_) {
        if (std::binary_search(revoked_leaves_.begin(), revoked_leaves_.end(), leaf)) {
            return {reason::revoked_crl, nullptr, nullptr};
        }
        if (clear != nullptr) *clear = instance_;
    }
    if (policy == stale_policy::deny) {
        for (const auto& crl : crls_) {
            if (crl.next_update != 0 && now > crl.next_update + grace.count()) return {reason::crl_stale, &crl, nullptr};
        }
        for (const auto& m : missing_) {
            if (now > m.since + grace.count()) return {reason::crl_stale, nullptr, &m};
        }
    }
    return {reason::ok, nullptr, nullptr};
}

std::vector<serial_key> newly_revoked(const std::vector<serial_key>& prev, const std::vector<serial_key>& next) {
    std::vector<serial_key> out;
    std::set_difference(next.begin(), next.end(), prev.begin(), prev.end(), std::back_inserter(out));
    return out;
}

}  // namespace devicegate
