#include "devicegate/ocsp.hpp"

#include <openssl/err.h>

#include <algorithm>

namespace devicegate {

std::string_view to_string(ocsp_status s) noexcept {
    switch (s) {
        case ocsp_status::good: return "good";
        case ocsp_status::revoked: return "revoked";
        case ocsp_status::unknown: return "unknown";
    }
    return "?";
}

namespace {

// The trust store sets X509_V_FLAG_NO_CHECK_TIME (times are checked per connect with the
// configured skew), so OCSP_basic_verify accepts a signer whatever its validity period. A
// delegated responder's certificate is the one certificate in an answer's chain that is
// not checked elsewhere: an expired one (whose key may since have leaked; RFC 6960 4.2.2.2
// leaves its revocation to its expiry) must not vouch for anything.
void check_signer_validity(OCSP_BASICRESP* basic, STACK_OF(X509) * untrusted, std::time_t now,
                           std::chrono::seconds skew) {
    X509* signer = nullptr;
    if (OCSP_resp_get0_signer(basic, &signer, untrusted) != 1 || signer == nullptr) {
        throw ocsp_error("the response's signer certificate cannot be found");
    }
    std::time_t not_before = 0, not_after = 0;
    try {
        not_before = to_time_t(X509_get0_notBefore(signer));
        not_after = to_time_t(X509_get0_notAfter(signer));
    } catch (const pki_error&) {
        throw ocsp_error("the responder certificate has unreadable validity dates");
    }
    const std::int64_t s = skew.count();
    if (not_after < now - s) {
        throw ocsp_error("the responder certificate " + subject_line(signer) + " expired " +
                         std::to_string(now - not_after) + "s ago");
    }
    if (not_before > now + s) {
        throw ocsp_error("the responder certificate " + subject_line(signer) + " is not valid before " +
                         std::to_string(not_before));
    }
}

}  // namespace

ocsp_query make_ocsp_query(X509* leaf, X509* issuer, bool nonce) {
    ocsp_query q;
    q.request.reset(OCSP_REQUEST_new());
    q.id.reset(OCSP_cert_to_id(EVP_sha1(), leaf, issuer));
    if (!q.request || !q.id) throw ocsp_error("cannot build an OCSP request: " + take_openssl_errors());
    ocsp_certid_ptr for_request(OCSP_CERTID_dup(q.id.get()));
    if (!for_request || !OCSP_request_add0_id(q.request.get(), for_request.get())) {
        throw ocsp_error("cannot build an OCSP request: " + take_openssl_errors());
    }
    (void)for_request.release();  // the request owns it now (add0)
    if (nonce && OCSP_request_add1_nonce(q.request.get(), nullptr, -1) != 1) {
        throw ocsp_error("cannot add an OCSP nonce: " + take_openssl_errors());
    }
    unsigned char* out = nullptr;
    int len = i2d_OCSP_REQUEST(q.request.get(), &out);
    openssl_bytes_ptr der(out);
    if (len <= 0) throw ocsp_error("cannot encode the OCSP request");
    q.der.assign(reinterpret_cast<char*>(der.get()), static_cast<std::size_t>(len));
    return q;
}

ocsp_answer verify_ocsp_response(std::string_view der, const ocsp_query& query, X509* issuer, STACK_OF(X509) * chain,
                                 X509_STORE* store, std::time_t now, std::chrono::seconds skew,
                                 std::chrono::seconds max_age) {
    ERR_clear_error();
    auto p = reinterpret_cast<const unsigned char*>(der.data());
    ocsp_response_ptr response(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
    if (!response) throw ocsp_error("not an OCSP response (" + std::to_string(der.size()) + " bytes)");
    const int rstatus = OCSP_response_status(response.get());
    if (rstatus != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        throw ocsp_error(std::string("responder answered ") + OCSP_response_status_str(rstatus));
    }
    ocsp_basic_ptr basic(OCSP_response_get1_basic(response.get()));
    if (!basic) throw ocsp_error("no basic OCSP response inside");
    // The signer must chain to our Root, and be the issuer itself or a responder the issuer
    // delegated to (issued by it, with id-kp-OCSPSigning): OCSP_basic_verify checks both.
    x509_stack_ptr untrusted(sk_X509_new_null());
    sk_X509_push(untrusted.get(), issuer);
    X509_up_ref(issuer);
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
        sk_X509_push(untrusted.get(), sk_X509_value(chain, i));
        X509_up_ref(sk_X509_value(chain, i));
    }
    if (OCSP_basic_verify(basic.get(), untrusted.get(), store, 0) <= 0) {
        std::string cause = take_openssl_errors();
        throw ocsp_error("response signature or signer not trusted" + (cause.empty() ? "" : ": " + cause));
    }
    check_signer_validity(basic.get(), untrusted.get(), now, skew);
    int nonce = OCSP_check_nonce(query.request.get(), basic.get());
    if (nonce == 0) throw ocsp_error("nonce mismatch");
    if (nonce == 3) throw ocsp_error("nonce in the response but none asked");
    int status = 0, reason = 0;
    ASN1_GENERALIZEDTIME *revoked_at = nullptr, *this_update = nullptr, *next_update = nullptr;
    if (OCSP_resp_find_status(basic.get(), query.id.get(), &status, &reason, &revoked_at, &this_update, &next_update) !=
        1) {
        throw ocsp_error("the response is not about the certificate asked for");
    }
    ocsp_answer a;
    try {
        a.this_update = to_time_t(this_update);
        a.next_update = next_update != nullptr ? to_time_t(next_update) : 0;
    } catch (const pki_error&) {
        throw ocsp_error("unreadable thisUpdate/nextUpdate");
    }
    const std::int64_t s = skew.count();
    if (a.this_update > now + s) throw ocsp_error("thisUpdate is in the future");
    if (a.next_update != 0 && a.next_update < now - s) {
        throw ocsp_error("stale: nextUpdate was " + std::to_string(now - a.next_update) + "s ago");
    }
    // Without nextUpdate a responder promises nothing about how long the answer holds (RFC 6960
    // section 4.2.2.1): only a bounded age keeps an old "good" from being replayed forever after
    // a revocation (OpenSSL's OCSP_check_validity takes the same bound as its maxsec).
    if (a.next_update == 0 && a.this_update < now - s - max_age.count()) {
        throw ocsp_error("stale: no nextUpdate, and thisUpdate was " + std::to_string(now - a.this_update) +
                         "s ago (ocsp_max_ttl " + std::to_string(max_age.count()) + "s, clock_skew " +
                         std::to_string(s) + "s)");
    }
    a.status = status == V_OCSP_CERTSTATUS_GOOD      ? ocsp_status::good
               : status == V_OCSP_CERTSTATUS_REVOKED ? ocsp_status::revoked
                                                     : ocsp_status::unknown;
    return a;
}

std::string ocsp_responder_url(X509* cert) {
    openssl_strings_ptr urls(X509_get1_ocsp(cert));
    std::string out;
    for (int i = 0; urls && i < sk_OPENSSL_STRING_num(urls.get()); ++i) {
        std::string url = sk_OPENSSL_STRING_value(urls.get(), i);
        if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) {
            out = url;
            break;
        }
    }
    return out;
}

std::optional<ocsp_status> ocsp_cache::lookup(const sha256_digest& fingerprint, std::time_t now) const {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(fingerprint);
    if (it == entries_.end() || !it->second.answer || now > it->second.expires) return std::nullopt;
    return it->second.answer->status;
}

std::optional<ocsp_answer> ocsp_cache::store(const sha256_digest& fingerprint, const ocsp_answer& answer,
                                            std::time_t now) {
    std::lock_guard lock(mutex_);
    auto& e = entries_[fingerprint];
    // An answer produced before the one held (even an expired one) is a replay or a lagging
    // responder: it never replaces a newer answer, a "revoked" above all.
    // A tie keeps a "revoked": two answers of the same second, one of them a revocation.
    if (e.answer && (answer.this_update < e.answer->this_update ||
                     (answer.this_update == e.answer->this_update && e.answer->status == ocsp_status::revoked &&
                      answer.status != ocsp_status::revoked))) {
        return e.answer;
    }
    e.answer = answer;
    // Until nextUpdate, bounded by the maximum TTL; without nextUpdate, until thisUpdate plus
    // the maximum TTL (the age verify_ocsp_response accepts), so a responder without nextUpdate,
    // or a far one, is asked again.
    std::time_t until = now + max_ttl_.count();
    until = std::min<std::time_t>(until, answer.next_update != 0 ? answer.next_update
                                                                 : answer.this_update + max_ttl_.count());
    e.expires = until;
    e.retry_after = 0;
    evict_locked(now);
    return std::nullopt;
}

void ocsp_cache::store_failure(const sha256_digest& fingerprint, std::time_t retry_after) {
    std::lock_guard lock(mutex_);
    entries_[fingerprint].retry_after = retry_after;
}

bool ocsp_cache::begin_fetch(const sha256_digest& fingerprint, X509* leaf, const std::string& serial_hex,
                             std::time_t now) {
    std::lock_guard lock(mutex_);
    if (in_flight_.count(fingerprint) > 0) return false;
    auto& e = entries_[fingerprint];
    if (e.retry_after > now) return false;
    if (!e.leaf) {
        X509_up_ref(leaf);
        e.leaf.reset(leaf);
        e.serial_hex = serial_hex;
    }
    in_flight_[fingerprint] = true;
    evict_locked(now);
    return true;
}

void ocsp_cache::end_fetch(const sha256_digest& fingerprint) {
    std::lock_guard lock(mutex_);
    in_flight_.erase(fingerprint);
}

void ocsp_cache::set_active(const sha256_digest& fingerprint, bool active, X509* leaf) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(fingerprint);
    if (it == entries_.end()) return;
    it->second.active = active;
    if (!active) {
        it->second.leaf.reset();
    } else if (leaf != nullptr && !it->second.leaf) {
        X509_up_ref(leaf);
        it->second.leaf.reset(leaf);
    }
}

std::vector<std::pair<sha256_digest, x509_ptr>> ocsp_cache::due_for_refresh(std::time_t now,
                                                                          std::chrono::seconds ahead) {
    std::vector<std::pair<sha256_digest, x509_ptr>> out;
    std::lock_guard lock(mutex_);
    for (auto& [fp, e] : entries_) {
        if (!e.active || !e.leaf || in_flight_.count(fp) > 0 || e.retry_after > now) continue;
        if (e.answer && e.expires - ahead.count() > now) continue;
        X509_up_ref(e.leaf.get());
        out.emplace_back(fp, x509_ptr(e.leaf.get()));
    }
    return out;
}

std::size_t ocsp_cache::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

void ocsp_cache::evict_locked(std::time_t now) {
    if (entries_.size() <= max_entries_) return;
    // Expired and inactive first; then any inactive; connected devices' entries last.
    for (int pass = 0; pass < 3 && entries_.size() > max_entries_; ++pass) {
        for (auto it = entries_.begin(); it != entries_.end() && entries_.size() > max_entries_;) {
            const bool expired = !it->second.answer || it->second.expires < now;
            const bool evict = in_flight_.count(it->first) == 0 &&
                               (pass == 0 ? (expired && !it->second.active) : pass == 1 ? !it->second.active : true);
            it = evict ? entries_.erase(it) : std::next(it);
        }
    }
}

}  // namespace devicegate
