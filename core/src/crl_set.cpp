#include "devicegate/crl_set.hpp"

#include "devicegate/crl_der.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <atomic>
#include <limits>

namespace devicegate {

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
        revoked.push_back(make_serial_key(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(entries, i))));
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
