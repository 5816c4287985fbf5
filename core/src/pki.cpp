#include "devicegate/pki.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <cctype>
#include <cerrno>
#include <new>
#include <optional>
#include <string>
#include <cstring>
#include <fstream>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace devicegate {

std::string take_openssl_errors() {
    std::string out;
    unsigned long code = 0;
    while ((code = ERR_get_error()) != 0) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out;
}

namespace {

// mosquitto switches to its `user` (default "mosquitto") before it loads plugins
// (drop_privileges, src/mosquitto.c), so a permission error names the user we run as.
std::string file_error(int err) {
    std::string text = std::strerror(err);
    if (err != EACCES && err != EPERM) return text;
    const passwd* pw = ::getpwuid(::geteuid());
    std::string user = pw != nullptr ? pw->pw_name : "uid " + std::to_string(::geteuid());
    return text + " (mosquitto runs as user " + user + ": make the file and every directory above it readable by " +
           user + ", see `user` in mosquitto.conf)";
}

}  // namespace

std::string read_file(const std::string& path, std::size_t max_bytes) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw pki_error(path + ": cannot stat: " + file_error(errno));
    }
    if (!S_ISREG(st.st_mode)) throw pki_error(path + ": not a regular file");
    if (st.st_size == 0) throw pki_error(path + ": file is empty");
    if (static_cast<std::size_t>(st.st_size) > max_bytes) {
        throw pki_error(path + ": file is " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                        std::to_string(max_bytes));
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw pki_error(path + ": cannot open: " + file_error(errno));
    std::string data(static_cast<std::size_t>(st.st_size), '\0');
    in.read(data.data(), static_cast<std::streamsize>(data.size()));
    if (in.gcount() != static_cast<std::streamsize>(data.size())) {
        throw pki_error(path + ": short read (file changed while reading?)");
    }
    return data;
}

int write_all(int fd, std::string_view data) noexcept {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO;  // write(2) of a non-zero count never returns 0 on a file
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return 0;
}

std::string write_atomically(const std::string& path, std::string_view data, mode_t mode) {
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return "cannot create " + tmp + ": " + std::strerror(errno);
    int err = write_all(fd, data);
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && err == 0) err = errno;  // NFS reports a failed write at close
    if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
    if (err != 0) {
        ::unlink(tmp.c_str());
        return "cannot write " + path + ": " + std::strerror(err);
    }
    // The rename is durable only once the directory is: after a power loss the old file
    // could come back (an older CRL number, a journal without its newest jobs).
    if (int dir_err = fsync_parent_directory(path); dir_err != 0) {
        return "cannot sync the directory of " + path + ": " + std::strerror(dir_err);
    }
    return "";
}

int fsync_parent_directory(const std::string& path) noexcept {
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    const int err = ::fsync(fd) != 0 ? errno : 0;
    ::close(fd);
    return err;
}

namespace {

bool looks_like_pem(std::string_view data) { return data.find("-----BEGIN ") != std::string_view::npos; }

bio_ptr memory_bio(std::string_view data) {
    bio_ptr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (!bio) throw pki_error("out of memory creating a BIO");
    return bio;
}

// Reads every PEM object of one type; fails on a truncated or corrupt block, and on input
// with no block at all.
template <class T, class Ptr>
std::vector<Ptr> read_pem_objects(std::string_view data, std::string_view source, std::string_view kind,
                                  T* (*read)(BIO*, T**, pem_password_cb*, void*)) {
    if (data.size() > static_cast<std::size_t>(INT32_MAX)) throw pki_error(std::string(source) + ": input too large");
    ERR_clear_error();
    auto bio = memory_bio(data);
    std::vector<Ptr> out;
    for (;;) {
        Ptr obj(read(bio.get(), nullptr, nullptr, nullptr));
        if (!obj) break;
        out.push_back(std::move(obj));
    }
    unsigned long err = ERR_peek_last_error();
    bool clean_end = err == 0 || (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE);
    if (!clean_end) {
        throw pki_error(std::string(source) + ": malformed PEM " + std::string(kind) + ": " + take_openssl_errors());
    }
    ERR_clear_error();
    if (out.empty()) throw pki_error(std::string(source) + ": no PEM " + std::string(kind) + " found");
    return out;
}

template <class T, class Ptr>
Ptr read_der_object(std::string_view data, std::string_view source, std::string_view kind,
                    T* (*d2i)(T**, const unsigned char**, long)) {
    ERR_clear_error();
    auto p = reinterpret_cast<const unsigned char*>(data.data());
    const unsigned char* const begin = p;
    Ptr obj(d2i(nullptr, &p, static_cast<long>(data.size())));
    if (!obj) {
        throw pki_error(std::string(source) + ": neither PEM nor valid DER " + std::string(kind) + ": " +
                        take_openssl_errors());
    }
    if (static_cast<std::size_t>(p - begin) != data.size()) {
        throw pki_error(std::string(source) + ": " + std::to_string(data.size() - static_cast<std::size_t>(p - begin)) +
                        " trailing bytes after the DER " + std::string(kind));
    }
    return obj;
}

}  // namespace

std::vector<x509_ptr> parse_certificates(std::string_view data, std::string_view source) {
    if (data.empty()) throw pki_error(std::string(source) + ": empty input");
    if (looks_like_pem(data)) {
        return read_pem_objects<X509, x509_ptr>(data, source, "certificate", PEM_read_bio_X509);
    }
    std::vector<x509_ptr> out;
    out.push_back(read_der_object<X509, x509_ptr>(data, source, "certificate", d2i_X509));
    return out;
}

std::vector<x509_crl_ptr> parse_crls(std::string_view data, std::string_view source) {
    if (data.empty()) throw pki_error(std::string(source) + ": empty input");
    if (looks_like_pem(data)) {
        return read_pem_objects<X509_CRL, x509_crl_ptr>(data, source, "CRL", PEM_read_bio_X509_CRL);
    }
    std::vector<x509_crl_ptr> out;
    out.push_back(read_der_object<X509_CRL, x509_crl_ptr>(data, source, "CRL", d2i_X509_CRL));
    return out;
}

serial_key make_serial_key(const ASN1_INTEGER* serial) {
    serial_key key;
    if (serial == nullptr) return key;
    const unsigned char* data = ASN1_STRING_get0_data(serial);
    auto len = static_cast<std::size_t>(ASN1_STRING_length(serial));
    bool negative = ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER;
    if (len <= 20 && !negative) {
        key.bytes[0] = static_cast<unsigned char>(len);
        if (len > 0) std::memcpy(key.bytes.data() + 1, data, len);
        return key;
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data, len, digest);
    key.bytes[0] = negative ? 0xFE : 0xFF;
    std::memcpy(key.bytes.data() + 1, digest, 20);
    return key;
}

std::string base64_encode(std::string_view data) {
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::string to_hex(const unsigned char* data, std::size_t size) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out += digits[data[i] >> 4];
        out += digits[data[i] & 0x0f];
    }
    return out;
}

std::optional<std::string> normalize_serial_hex(std::string_view text) {
    const bool negative = !text.empty() && text[0] == '-';
    if (negative) text.remove_prefix(1);
    if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) text.remove_prefix(2);
    std::string digits;
    for (char c : text) {
        if (c == ':') continue;
        if (c >= '0' && c <= '9') digits += c;
        else if (c >= 'a' && c <= 'f') digits += static_cast<char>(c - 'a' + 'A');
        else if (c >= 'A' && c <= 'F') digits += c;
        else return std::nullopt;
    }
    if (digits.empty() || digits.size() > 128) return std::nullopt;
    std::string hex = digits.size() % 2 != 0 ? "0" + digits : digits;
    std::size_t skip = 0;  // whole leading zero bytes, keeping at least one byte
    while (skip + 2 < hex.size() && hex[skip] == '0' && hex[skip + 1] == '0') skip += 2;
    hex.erase(0, skip);
    if (!negative) return hex;
    if (hex == "00") return std::nullopt;  // no negative zero
    return "-" + hex;
}

std::optional<serial_key> serial_key_from_hex(std::string_view hex) {
    auto normalized = normalize_serial_hex(hex);
    if (!normalized) return std::nullopt;
    const bool negative = normalized->front() == '-';
    std::string bytes;
    for (std::size_t i = negative ? 1 : 0; i < normalized->size(); i += 2) {
        bytes += static_cast<char>(std::stoi(normalized->substr(i, 2), nullptr, 16));
    }
    if (bytes == std::string(1, '\0')) bytes.clear();  // serial 0: empty magnitude, as OpenSSL stores it
    asn1_integer_ptr i(ASN1_INTEGER_new());
    if (!i || ASN1_STRING_set(i.get(), bytes.data(), static_cast<int>(bytes.size())) != 1) {
        throw std::bad_alloc();
    }
    if (negative) i->type = V_ASN1_NEG_INTEGER;  // as d2i_ASN1_INTEGER marks a negative serial
    return make_serial_key(i.get());
}

std::string fingerprint_hex(const sha256_digest& digest) {
    std::string hex = to_hex(digest.data(), digest.size());
    for (auto& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return hex;
}

std::string serial_hex(const ASN1_INTEGER* serial) {
    if (serial == nullptr) return "-";
    std::string hex = to_hex(ASN1_STRING_get0_data(serial), static_cast<std::size_t>(ASN1_STRING_length(serial)));
    if (hex.empty()) hex = "00";
    if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) hex.insert(0, "-");
    return hex;
}

sha256_digest certificate_sha256(X509* cert) {
    // What X509_digest(cert, EVP_sha256()) computes (the hash of the DER), with the digest
    // fetched once: OpenSSL 3 fetches EVP_sha256() from its provider store, under a lock, on
    // every use, and this runs on every connect.
    static EVP_MD* const fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);  // kept for the process
    const EVP_MD* sha256 = fetched != nullptr ? fetched : EVP_sha256();     // else fetched per call
    unsigned char* der = nullptr;
    const int der_len = i2d_X509(cert, &der);
    sha256_digest out{};
    unsigned int len = 0;
    const bool ok = der_len > 0 && EVP_Digest(der, static_cast<std::size_t>(der_len), out.data(), &len, sha256, nullptr) == 1 &&
                    len == out.size();
    OPENSSL_free(der);
    if (!ok) throw pki_error("cannot compute the certificate's SHA-256: " + take_openssl_errors());
    return out;
}

std::time_t to_time_t(const ASN1_TIME* t) {
    struct tm tm {};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) throw pki_error("invalid ASN.1 time");
    return timegm(&tm);
}

std::vector<std::string> crl_distribution_point_urls(X509* cert) {
    std::vector<std::string> out;
    std::unique_ptr<CRL_DIST_POINTS, c_deleter<CRL_DIST_POINTS_free>> points(
        static_cast<CRL_DIST_POINTS*>(X509_get_ext_d2i(cert, NID_crl_distribution_points, nullptr, nullptr)));
    for (int i = 0; points && i < sk_DIST_POINT_num(points.get()); ++i) {
        const DIST_POINT* dp = sk_DIST_POINT_value(points.get(), i);
        if (dp->distpoint == nullptr || dp->distpoint->type != 0) continue;  // 0: fullName
        const GENERAL_NAMES* names = dp->distpoint->name.fullname;
        for (int n = 0; n < sk_GENERAL_NAME_num(names); ++n) {
            const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, n);
            if (name->type != GEN_URI) continue;
            std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(name->d.uniformResourceIdentifier)),
                            static_cast<std::size_t>(ASN1_STRING_length(name->d.uniformResourceIdentifier)));
            if (uri.rfind("http://", 0) == 0 || uri.rfind("https://", 0) == 0) out.push_back(uri);
        }
    }
    return out;
}

std::string subject_line(X509* cert) { return name_line(X509_get_subject_name(cert)); }

std::string name_line(const X509_NAME* name) {
    bio_ptr bio(BIO_new(BIO_s_mem()));
    if (!bio) return "?";
    X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace devicegate
