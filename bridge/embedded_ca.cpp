#include "embedded_ca.hpp"

#include "devicegate/log.hpp"
#include "devicegate/pki.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace devicegate::bridge {

namespace {

using asn1_integer_ptr = std::unique_ptr<ASN1_INTEGER, c_deleter<ASN1_INTEGER_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, c_deleter<BN_free>>;
using x509_revoked_ptr = std::unique_ptr<X509_REVOKED, c_deleter<X509_REVOKED_free>>;
using asn1_enumerated_ptr = std::unique_ptr<ASN1_ENUMERATED, c_deleter<ASN1_ENUMERATED_free>>;

void add_extension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
    if (ext == nullptr) throw signer_error("cannot build extension " + std::string(OBJ_nid2sn(nid)));
    const int added = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    if (added != 1) throw signer_error("cannot add extension " + std::string(OBJ_nid2sn(nid)));
}

/// Ed25519/Ed448 sign without a separate digest (RFC 8410); everything else with SHA-256.
const EVP_MD* signing_digest(EVP_PKEY* key) {
    const int id = EVP_PKEY_get_base_id(key);
    return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? nullptr : EVP_sha256();
}

asn1_integer_ptr serial_from_hex(const std::string& hex) {
    BIGNUM* raw = nullptr;
    if (BN_hex2bn(&raw, hex.c_str()) == 0) return nullptr;
    bignum_ptr bn(raw);
    return asn1_integer_ptr(BN_to_ASN1_INTEGER(bn.get(), nullptr));
}

}  // namespace

void check_ca_validity(X509* ca, const std::string& file, std::time_t now, std::chrono::seconds min_left) {
    const std::time_t not_before = to_time_t(X509_get0_notBefore(ca));
    const std::time_t not_after = to_time_t(X509_get0_notAfter(ca));
    if (now < not_before) {
        throw ca_validity_error(file + ": the CA certificate is not valid before " + iso_utc(not_before) + " (notBefore; now " +
                                iso_utc(now) + ")");
    }
    if (now >= not_after) {
        throw ca_validity_error(file + ": the CA certificate expired at " + iso_utc(not_after) + " (notAfter; now " + iso_utc(now) +
                                "): replace it");
    }
    if (not_after - now < min_left.count()) {
        throw ca_validity_error(file + ": the CA certificate expires at " + iso_utc(not_after) + " (notAfter), less than " +
                                std::to_string(min_left.count()) + " s from now: replace it");
    }
}

long stored_crl_number(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return 0;
    try {
        auto crls = parse_crls(read_file(path, max_crl_file_bytes), path);
        if (crls.size() != 1) throw signer_error("holds " + std::to_string(crls.size()) + " CRLs, not one");
        int critical = 0;
        asn1_integer_ptr number(static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crls[0].get(), NID_crl_number, &critical, nullptr)));
        if (!number) return 0;
        std::int64_t value = 0;
        if (ASN1_INTEGER_get_int64(&value, number.get()) != 1 || value < 0) {
            take_openssl_errors();
            throw signer_error("its CRL number is negative or too large");
        }
        return static_cast<long>(value);
    } catch (const std::exception& e) {
        // Starting from the clock instead could number the next CRL below the one the brokers
        // hold, and they would refuse it as a rollback (RFC 5280 5.2.3: CRLNumber increases).
        throw signer_error(path + ": cannot read the stored CRL's number (" + e.what() +
                           "); the next CRL must be numbered above it");
    }
}

std::unique_ptr<ASN1_INTEGER, c_deleter<ASN1_INTEGER_free>> random_serial() {
    unsigned char bytes[16];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw signer_error("no randomness for a serial");
    bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x01);  // positive, 16 octets
    bignum_ptr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
    asn1_integer_ptr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    if (!serial) throw signer_error("cannot make a serial");
    return serial;
}

x509_ptr make_device_certificate(X509_REQ* csr, const std::string& device_id, X509* issuer, EVP_PKEY* issuer_key,
                                 const ASN1_INTEGER* serial, const certificate_profile& profile) {
    x509_ptr cert(X509_new());
    if (!cert) throw signer_error("out of memory");
    X509_set_version(cert.get(), 2);
    X509_set_serialNumber(cert.get(), const_cast<ASN1_INTEGER*>(serial));
    X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer));
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(device_id.c_str()), -1,
                               -1, 0);
    // Never beyond the issuer's own notAfter (RFC 5280 path validation would fail anyway).
    std::time_t now = std::time(nullptr);
    std::time_t not_after = now + profile.validity.count();
    not_after = std::min(not_after, to_time_t(X509_get0_notAfter(issuer)));
    X509_time_adj_ex(X509_getm_notBefore(cert.get()), 0, -profile.backdate.count(), &now);
    X509_time_adj_ex(X509_getm_notAfter(cert.get()), 0, 0, &not_after);
    if (X509_set_pubkey(cert.get(), X509_REQ_get0_pubkey(csr)) != 1) throw signer_error("cannot set the public key");
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
    const bool rsa = EVP_PKEY_get_base_id(X509_REQ_get0_pubkey(csr)) == EVP_PKEY_RSA;
    add_extension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), &ctx, NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature");
    add_extension(cert.get(), &ctx, NID_ext_key_usage, "clientAuth");
    add_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash");
    add_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
    add_extension(cert.get(), &ctx, NID_subject_alt_name, "DNS:" + device_id);
    if (X509_sign(cert.get(), issuer_key, signing_digest(issuer_key)) == 0) {
        throw signer_error("signing failed: " + take_openssl_errors());
    }
    return cert;
}

std::string to_pem(X509* cert) {
    bio_ptr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) throw signer_error("cannot encode a certificate");
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
}

evp_pkey_ptr read_private_key(const std::string& path) {
    const std::string text = read_file(path, max_certificate_file_bytes);
    bio_ptr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    evp_pkey_ptr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    if (!key) throw signer_error(path + ": not an unencrypted PEM private key (" + take_openssl_errors() + ")");
    return key;
}

embedded_ca::embedded_ca(options opts) : opts_(std::move(opts)) {
    try {
        cert_ = std::move(parse_certificates(read_file(opts_.ca_cert_file, max_certificate_file_bytes), opts_.ca_cert_file).at(0));
    } catch (const std::exception& e) {
        throw signer_error(e.what());
    }
    check_ca_validity(cert_.get(), opts_.ca_cert_file, std::time(nullptr), std::chrono::seconds(0));
    key_ = read_private_key(opts_.ca_key_file);
    if (X509_check_private_key(cert_.get(), key_.get()) != 1) {
        take_openssl_errors();
        throw signer_error(opts_.ca_key_file + ": the key does not belong to " + opts_.ca_cert_file);
    }
    std::error_code ec;
    std::filesystem::create_directories(opts_.state_dir, ec);
    if (ec) throw signer_error(opts_.state_dir + ": cannot create: " + ec.message());
    index_path_ = opts_.state_dir + "/index.txt";
    crl_path_ = opts_.state_dir + "/crl.der";
    replay_index();
    std::lock_guard lock(mutex_);
    // CRLNumber keeps increasing across restarts: a burst of revocations numbers CRLs ahead
    // of the clock, and a restart must not number the next one below them.
    crl_number_ = stored_crl_number(crl_path_);
    write_crl_locked();
}

void embedded_ca::replay_index() {
    std::ifstream in(index_path_);
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        std::istringstream fields(line);
        std::string op, serial;
        fields >> op >> serial;
        if (op == "issued") {
            entry e;
            fields >> e.device_id >> e.not_after;
            if (fields.fail()) throw signer_error(index_path_ + ": line " + std::to_string(number) + " is damaged");
            serials_[serial] = e;
        } else if (op == "revoked") {
            std::time_t at = 0;
            int reason = 0;
            fields >> at >> reason;
            auto it = serials_.find(serial);
            if (fields.fail() || it == serials_.end()) {
                throw signer_error(index_path_ + ": line " + std::to_string(number) + " is damaged");
            }
            it->second.revoked_at = at;
            it->second.reason = reason;
        } else if (!line.empty()) {
            throw signer_error(index_path_ + ": line " + std::to_string(number) + " is damaged");
        }
    }
}

void embedded_ca::append_index(const std::string& line) {
    // Durable before the certificate or the revocation is acknowledged.
    const int fd = ::open(index_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw signer_error(index_path_ + ": cannot open for append");
    const std::string text = line + "\n";
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) throw signer_error(index_path_ + ": cannot append");
}

issued_certificate embedded_ca::issue(X509_REQ* csr, const std::string& device_id) {
    check_ca_validity(cert_.get(), opts_.ca_cert_file, std::time(nullptr), required_ca_validity_left(opts_.profile.validity));
    auto serial = random_serial();
    x509_ptr cert = make_device_certificate(csr, device_id, cert_.get(), key_.get(), serial.get(), opts_.profile);
    issued_certificate out;
    out.certificate_pem = to_pem(cert.get());
    out.serial_hex = serial_hex(X509_get0_serialNumber(cert.get()));
    out.not_after = to_time_t(X509_get0_notAfter(cert.get()));
    std::lock_guard lock(mutex_);
    append_index("issued " + out.serial_hex + " " + device_id + " " + std::to_string(out.not_after));
    serials_[out.serial_hex] = entry{device_id, out.not_after, 0, 0};
    return out;
}

void embedded_ca::revoke(const std::string& serial_hex_value, int reason_code) {
    std::lock_guard lock(mutex_);
    auto it = serials_.find(serial_hex_value);
    if (it == serials_.end()) throw signer_not_found("serial " + serial_hex_value + " was not issued by this CA");
    if (it->second.revoked_at != 0) throw signer_not_found("serial " + serial_hex_value + " is already revoked");
    const std::time_t now = std::time(nullptr);
    append_index("revoked " + serial_hex_value + " " + std::to_string(now) + " " + std::to_string(reason_code));
    it->second.revoked_at = now;
    it->second.reason = reason_code;
    write_crl_locked();
}

bool embedded_ca::is_revoked(const std::string& serial_hex_value) const {
    std::lock_guard lock(mutex_);
    auto it = serials_.find(serial_hex_value);
    return it != serials_.end() && it->second.revoked_at != 0;
}

std::size_t embedded_ca::issued_count() const {
    std::lock_guard lock(mutex_);
    return serials_.size();
}

std::string embedded_ca::crl_der() const {
    std::lock_guard lock(mutex_);
    if (std::time(nullptr) - crl_this_update_ > opts_.crl_validity.count() / 2) write_crl_locked();
    return crl_der_;
}

void embedded_ca::write_crl_locked() const {
    using crl_ptr = std::unique_ptr<X509_CRL, c_deleter<X509_CRL_free>>;
    crl_ptr crl(X509_CRL_new());
    const std::time_t now = std::time(nullptr);
    asn1_time_ptr this_update(ASN1_TIME_set(nullptr, now));
    asn1_time_ptr next_update(ASN1_TIME_set(nullptr, now + opts_.crl_validity.count()));
    if (!crl || !this_update || !next_update) throw signer_error("out of memory");
    X509_CRL_set_version(crl.get(), 1);  // v2: extensions
    X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert_.get()));
    X509_CRL_set1_lastUpdate(crl.get(), this_update.get());
    X509_CRL_set1_nextUpdate(crl.get(), next_update.get());
    for (const auto& [hex, e] : serials_) {
        if (e.revoked_at == 0) continue;
        // As step-ca: certificates expired more than an hour ago leave the CRL.
        if (e.not_after + 3600 < now) continue;
        x509_revoked_ptr revoked(X509_REVOKED_new());
        auto serial = serial_from_hex(hex);
        asn1_time_ptr at(ASN1_TIME_set(nullptr, e.revoked_at));
        asn1_enumerated_ptr reason(ASN1_ENUMERATED_new());
        if (!revoked || !serial || !at || !reason) throw signer_error("cannot build a CRL entry");
        X509_REVOKED_set_serialNumber(revoked.get(), serial.get());
        X509_REVOKED_set_revocationDate(revoked.get(), at.get());
        ASN1_ENUMERATED_set(reason.get(), e.reason);
        X509_REVOKED_add1_ext_i2d(revoked.get(), NID_crl_reason, reason.get(), 0, 0);
        if (X509_CRL_add0_revoked(crl.get(), revoked.get()) != 1) throw signer_error("cannot add a CRL entry");
        revoked.release();
    }
    X509_CRL_sort(crl.get());
    // CRLNumber must increase (RFC 5280 5.2.3): the clock, or one more than the last.
    crl_number_ = std::max(crl_number_ + 1, static_cast<long>(now));
    asn1_integer_ptr number(ASN1_INTEGER_new());
    ASN1_INTEGER_set(number.get(), crl_number_);
    X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, cert_.get(), nullptr, nullptr, crl.get(), 0);
    X509_EXTENSION* aki = X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
    if (aki == nullptr) throw signer_error("cannot build the CRL's authority key identifier");
    X509_CRL_add_ext(crl.get(), aki, -1);
    X509_EXTENSION_free(aki);
    if (X509_CRL_sign(crl.get(), key_.get(), signing_digest(key_.get())) == 0) {
        throw signer_error("signing the CRL failed: " + take_openssl_errors());
    }
    unsigned char* der = nullptr;
    const int len = i2d_X509_CRL(crl.get(), &der);
    if (len <= 0) throw signer_error("cannot encode the CRL");
    std::string bytes(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    // Durably, directory included: a power loss must not bring back an older crl.der, whose
    // number the next start would build on. 0644: the CRL is public.
    if (auto error = write_atomically(crl_path_, bytes, 0644); !error.empty()) throw signer_error(error);
    crl_der_ = std::move(bytes);
    crl_this_update_ = now;
}

}  // namespace devicegate::bridge
