#include "devicegate/crl_der.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cstring>
#include <optional>

namespace devicegate {

namespace {

// One DER TLV (definite length, as DER requires).
struct tlv {
    unsigned char tag = 0;
    std::string_view whole;
    std::string_view content;
};

std::optional<tlv> read_tlv(std::string_view& in) {
    if (in.size() < 2) return std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(in.data());
    std::size_t header = 2, length = p[1];
    if (length & 0x80) {
        const std::size_t octets = length & 0x7f;
        if (octets == 0 || octets > 4 || in.size() < 2 + octets) return std::nullopt;
        length = 0;
        for (std::size_t i = 0; i < octets; ++i) length = (length << 8) | p[2 + i];
        header += octets;
    }
    if (in.size() - header < length) return std::nullopt;
    tlv out{p[0], in.substr(0, header + length), in.substr(header, length)};
    in.remove_prefix(header + length);
    return out;
}

void openssl_free(void* p) noexcept { OPENSSL_free(p); }
using openssl_bytes = std::unique_ptr<void, c_deleter<openssl_free>>;
using x509_name_ptr = std::unique_ptr<X509_NAME, c_deleter<X509_NAME_free>>;
using x509_algor_ptr = std::unique_ptr<X509_ALGOR, c_deleter<X509_ALGOR_free>>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, c_deleter<EVP_MD_CTX_free>>;

struct crl_parts {
    std::string_view tbs, algorithm, signature, issuer;
};

// CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
// TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier, issuer Name, ... }
std::optional<crl_parts> split(std::string_view der) {
    auto outer = read_tlv(der);
    if (!outer || outer->tag != 0x30) return std::nullopt;
    std::string_view body = outer->content;
    auto tbs = read_tlv(body);
    auto alg = read_tlv(body);
    auto sig = read_tlv(body);
    if (!tbs || !alg || !sig || tbs->tag != 0x30 || alg->tag != 0x30 || sig->tag != 0x03) return std::nullopt;
    std::string_view fields = tbs->content;
    auto field = read_tlv(fields);
    if (field && field->tag == 0x02) field = read_tlv(fields);  // version
    if (!field || field->tag != 0x30) return std::nullopt;      // inner signature algorithm
    auto issuer = read_tlv(fields);
    if (!issuer || issuer->tag != 0x30) return std::nullopt;
    return crl_parts{tbs->whole, alg->whole, sig->content, issuer->whole};
}

// Verifies the signature over the raw tbsCertList. Returns false when the algorithm is one
// this check leaves to X509_CRL_verify (it needs parameters, such as RSA-PSS).
bool signature_verifies(const crl_parts& parts, EVP_PKEY* key, bool& handled) {
    handled = false;
    auto p = reinterpret_cast<const unsigned char*>(parts.algorithm.data());
    x509_algor_ptr alg(d2i_X509_ALGOR(nullptr, &p, static_cast<long>(parts.algorithm.size())));
    int md_nid = NID_undef, pkey_nid = NID_undef;
    if (!alg || OBJ_find_sigid_algs(OBJ_obj2nid(alg->algorithm), &md_nid, &pkey_nid) != 1 ||
        pkey_nid == EVP_PKEY_RSA_PSS) {
        return false;
    }
    const EVP_MD* md = md_nid == NID_undef ? nullptr : EVP_get_digestbynid(md_nid);
    if (md_nid != NID_undef && md == nullptr) return false;
    handled = true;
    // BIT STRING content: the count of unused bits (0 for a signature), then the bits.
    if (parts.signature.empty() || parts.signature[0] != 0) return false;
    md_ctx_ptr ctx(EVP_MD_CTX_new());
    const auto* sig = reinterpret_cast<const unsigned char*>(parts.signature.data()) + 1;
    const auto* tbs = reinterpret_cast<const unsigned char*>(parts.tbs.data());
    return ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) == 1 &&
           EVP_DigestVerify(ctx.get(), sig, parts.signature.size() - 1, tbs, parts.tbs.size()) == 1;
}

void precheck_der(std::string_view der, std::string_view source, const tenant_trust& trust) {
    auto parts = split(der);
    if (!parts) return;  // not a CRL's shape: the parser names the problem
    auto p = reinterpret_cast<const unsigned char*>(parts->issuer.data());
    x509_name_ptr issuer(d2i_X509_NAME(nullptr, &p, static_cast<long>(parts->issuer.size())));
    if (!issuer) return;
    for (ca_role role : {ca_role::sub_ca, ca_role::ica, ca_role::root}) {
        X509* ca = trust.certificate(role);
        if (X509_NAME_cmp(issuer.get(), X509_get_subject_name(ca)) != 0) continue;
        bool handled = false;
        const bool ok = signature_verifies(*parts, X509_get0_pubkey(ca), handled);
        ERR_clear_error();
        if (handled && !ok) {
            throw pki_error(std::string(source) + ": CRL signature does not verify against the " +
                            std::string(to_string(role)) + " " + subject_line(ca));
        }
        return;
    }
    char name[256];
    X509_NAME_oneline(issuer.get(), name, sizeof name);
    throw pki_error(std::string(source) + ": CRL issuer " + name + " is none of the configured Sub-CA, ICA or Root");
}

}  // namespace

void precheck_crl_signatures(std::string_view data, std::string_view source, const tenant_trust& trust) {
    if (data.find("-----BEGIN ") == std::string_view::npos) return precheck_der(data, source, trust);
    if (data.size() > static_cast<std::size_t>(INT32_MAX)) return;  // the parser refuses it
    bio_ptr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) throw pki_error("out of memory creating a BIO");
    for (;;) {
        char *name = nullptr, *header = nullptr;
        unsigned char* der = nullptr;
        long len = 0;
        if (PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) break;  // end, or the parser's error
        openssl_bytes hold_name(name), hold_header(header), hold_der(der);
        if (std::strcmp(name, PEM_STRING_X509_CRL) == 0) precheck_der(std::string_view(reinterpret_cast<char*>(der), static_cast<std::size_t>(len)), source, trust);
    }
    ERR_clear_error();
}

}  // namespace devicegate
