#include "devicegate/crl_state.hpp"

#include "devicegate/crl_der.hpp"

#include <openssl/bn.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace devicegate {

namespace {

const char* file_tag(ca_role role) noexcept {
    switch (role) {
        case ca_role::sub_ca: return "subca";
        case ca_role::ica: return "ica";
        case ca_role::root: return "root";
    }
    return "unknown";
}

std::string compare_line(const crl_version& fresh, const crl_version& in_force, const std::string& in_force_source) {
    return describe(fresh) + " < " + describe(in_force) + " from " + in_force_source;
}

}  // namespace

std::string_view to_string(crl_refusal r) noexcept {
    switch (r) {
        case crl_refusal::none: return "none";
        case crl_refusal::invalid: return "invalid";
        case crl_refusal::future_dated: return "future_dated";
        case crl_refusal::rollback: return "rollback";
        case crl_refusal::other_partition: return "other_partition";
    }
    return "?";
}

crl_version version_of(X509_CRL* crl) {
    crl_version v;
    v.this_update = to_time_t(X509_CRL_get0_lastUpdate(crl));
    int critical = 0;
    std::unique_ptr<ASN1_INTEGER, c_deleter<ASN1_INTEGER_free>> number(
        static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, &critical, nullptr)));
    if (!number || ASN1_STRING_type(number.get()) == V_ASN1_NEG_INTEGER) return v;  // none, or not conforming
    std::unique_ptr<BIGNUM, c_deleter<BN_free>> bn(ASN1_INTEGER_to_BN(number.get(), nullptr));
    if (!bn) return v;
    char* hex = BN_bn2hex(bn.get());
    if (hex != nullptr) v.number = hex;
    OPENSSL_free(hex);
    return v;
}

bool is_rollback(const crl_version& fresh, const crl_version& in_force) {
    if (fresh.this_update < in_force.this_update) return true;
    if (fresh.number.empty() || in_force.number.empty()) return false;
    // Hex without leading zeros: a shorter string is a smaller number.
    if (fresh.number.size() != in_force.number.size()) return fresh.number.size() < in_force.number.size();
    return fresh.number < in_force.number;
}

std::string describe(const crl_version& v) {
    return "CRL number " + (v.number.empty() ? std::string("none") : "0x" + v.number) + " thisUpdate " +
           std::to_string(v.this_update);
}

crl_state::crl_state(std::shared_ptr<const tenant_trust> trust, options opts)
    : trust_(std::move(trust)), opts_(std::move(opts)) {}

std::string crl_state::persisted_file(ca_role role) const {
    return opts_.state_dir.empty() ? "" : opts_.state_dir + "/devicegate-crl-" + file_tag(role) + ".der";
}

std::vector<std::string> crl_state::load_persisted(std::time_t now) {
    std::vector<std::string> loaded;
    for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) {
        const std::string path = persisted_file(role);
        std::error_code ec;
        if (path.empty() || !std::filesystem::exists(path, ec)) continue;
        try {
            const std::string data = read_file(path, max_crl_file_bytes);
            precheck_crl_signatures(data, path, *trust_);
            auto crls = parse_crls(data, path);
            if (crls.size() != 1) throw pki_error(path + ": holds " + std::to_string(crls.size()) + " CRLs, not one");
            verified_crl v = verify_crl(crls[0].get(), *trust_, path);
            if (v.issuer != role) throw pki_error(path + ": holds the " + std::string(to_string(v.issuer)) + "'s CRL");
            auto& s = slots_[index(role)];
            s.version = version_of(crls[0].get());
            s.undelivered_since = now;
            loaded.push_back(path + " " + std::string(to_string(role)) + " " + describe(s.version) + " with " +
                             std::to_string(v.revoked.size()) + " entries");
            s.crl = std::move(v);
        } catch (const pki_error& e) {
            throw pki_error(std::string(e.what()) + " (the newest CRL an earlier run saw; delete the file to start "
                                                    "from the configured CRLs)");
        }
    }
    return loaded;
}

crl_offer_result crl_state::offer(X509_CRL* crl, const std::string& source, std::time_t now, std::string_view der) {
    verified_crl v = verify_crl(crl, *trust_, source);
    crl_offer_result r;
    r.issuer = v.issuer;
    const crl_version version = version_of(crl);
    if (v.this_update > now + opts_.clock_skew.count()) {
        // A CA clock (or a forger with the CA key) ahead of ours: taking it would make every
        // correct CRL after it look older, freezing revocation until that date.
        r.refusal = crl_refusal::future_dated;
        r.detail = "thisUpdate " + std::to_string(v.this_update) + " is " + std::to_string(v.this_update - now) +
                   "s in the future (clock_skew " + std::to_string(opts_.clock_skew.count()) + "s)";
        return r;
    }
    auto& s = slots_[index(v.issuer)];
    if (s.crl && !v.distribution_point.empty() && v.distribution_point != s.crl->distribution_point) {
        // A CA that partitions its revocations publishes one CRL per distribution point; each is
        // complete for its own certificates only, so none replaces another, or a full CRL.
        r.refusal = crl_refusal::other_partition;
        r.detail = "its issuingDistributionPoint names " + v.distribution_point + ", the CRL in force from " +
                   s.crl->source + (s.crl->distribution_point.empty() ? " has none (it covers every certificate)"
                                                                        : " names " + s.crl->distribution_point) +
                   ": a CRL for another distribution point cannot replace it";
        return r;
    }
    if (s.crl && is_rollback(version, s.version)) {
        r.refusal = crl_refusal::rollback;
        r.detail = "older than the one in force: " + compare_line(version, s.version, s.crl->source);
        return r;
    }
    r.changed = !s.crl || version.number != s.version.number || version.this_update != s.version.this_update ||
                v.next_update != s.crl->next_update || v.revoked != s.crl->revoked ||
                v.distribution_point != s.crl->distribution_point;
    if (!r.changed) {
        s.crl->source = source;  // the same CRL, delivered again (possibly by another source)
        return r;
    }
    s.crl = std::move(v);
    s.version = version;
    r.persist_error = persist(r.issuer, crl, der);
    return r;
}

std::string crl_state::persist(ca_role role, X509_CRL* crl, std::string_view der) const {
    const std::string path = persisted_file(role);
    if (path.empty()) return "";
    if (!der.empty()) return write_atomically(path, der);
    unsigned char* encoded = nullptr;
    const int len = i2d_X509_CRL(crl, &encoded);
    if (len <= 0) return "cannot encode the CRL for " + path;
    std::string error =
        write_atomically(path, std::string_view(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(len)));
    OPENSSL_free(encoded);
    return error;
}

bool crl_state::set_delivered(const std::string& source, const std::vector<ca_role>& issuers, std::time_t now) {
    delivered_[source] = issuers;
    bool changed = false;
    for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) {
        auto& s = slots_[index(role)];
        if (!s.crl) continue;
        const bool delivered = std::any_of(delivered_.begin(), delivered_.end(), [&](const auto& entry) {
            return std::find(entry.second.begin(), entry.second.end(), role) != entry.second.end();
        });
        const std::int64_t since = delivered ? 0 : s.undelivered_since != 0 ? s.undelivered_since : now;
        changed = changed || since != s.undelivered_since;
        s.undelivered_since = since;
    }
    return changed;
}

std::vector<verified_crl> crl_state::in_force() const {
    std::vector<verified_crl> out;
    for (const auto& s : slots_) {
        if (s.crl) out.push_back(*s.crl);
    }
    return out;
}

std::vector<missing_crl_source> crl_state::undelivered() const {
    std::vector<missing_crl_source> out;
    for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) {
        const auto& s = slots_[index(role)];
        if (!s.crl || s.undelivered_since == 0) continue;
        out.push_back({"any source for the " + std::string(to_string(role)) + " (in force: " + s.crl->source + ")",
                       s.undelivered_since});
    }
    return out;
}

}  // namespace devicegate
