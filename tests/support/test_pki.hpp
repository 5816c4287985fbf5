#pragma once
// Access to the PKI that tests/pki/make-test-pki.sh generates for the build tree.
#include "devicegate/pki.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace devicegate::test {

inline std::string pki(const std::string& name) { return std::string(DEVICEGATE_TEST_PKI) + "/" + name; }
inline std::string device_cert(const std::string& name) { return pki("devices/" + name + ".crt"); }
inline std::string device_key(const std::string& name) { return pki("devices/" + name + ".key"); }

inline x509_ptr load_cert(const std::string& path) {
    auto certs = parse_certificates(read_file(path, max_certificate_file_bytes), path);
    return std::move(certs.at(0));
}

inline void write_file(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
}

/// A fresh directory under the system temp dir, removed with the object.
class temp_dir {
public:
    temp_dir() {
        std::random_device rd;
        path_ = std::filesystem::temp_directory_path() / ("devicegate-test-" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

}  // namespace devicegate::test
