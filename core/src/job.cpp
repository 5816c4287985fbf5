#include "devicegate/job.hpp"

#include "devicegate/device_id.hpp"
#include "devicegate/json_fields.hpp"
#include "devicegate/pki.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace devicegate {

bool same_fingerprint(std::string_view a, std::string_view b) noexcept {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
    });
}

std::string_view to_string(job_type t) noexcept {
    switch (t) {
    case job_type::first_connect: return "first_connect";
    case job_type::certificate_changed: return "certificate_changed";
    case job_type::decommission: return "decommission";
    }
    return "unknown";
}

namespace {

// The job is written by hand into one reserved string (issue 13): nlohmann's object and its
// dump() escaped the PEM byte by byte and allocated per field, on every first connect.
void append_field(std::string& out, std::string_view name, std::string_view value) {
    out += ",\"";
    out += name;
    out += "\":";
    append_json_string(out, value);
}

/// The certificate's fields, each preceded by a comma.
void append_certificate(std::string& out, const device_certificate& c) {
    append_field(out, "device_id", c.device_id);
    append_field(out, "serial", c.serial_hex);
    append_field(out, "fingerprint_sha256", c.fingerprint_sha256);
    append_field(out, "certificate_pem", c.certificate_pem);
    out += ",\"first_seen\":";
    out += std::to_string(c.first_seen);
    append_field(out, "broker_id", c.broker_id);
}

std::size_t encoded_size(const device_certificate& c) {
    // The PEM's line breaks double; 160 covers the names, quotes and the integer.
    return 160 + c.device_id.size() + c.serial_hex.size() + c.fingerprint_sha256.size() +
           c.certificate_pem.size() + c.certificate_pem.size() / 64 + c.broker_id.size();
}

}  // namespace

std::string encode_job(const device_certificate& cert, job_type type) {
    std::string out;
    out.reserve(encoded_size(cert));
    out += "{\"type\":";  // first: the first-connect script rewrites this prefix (job_producer.cpp)
    append_json_string(out, to_string(type));
    out += ",\"schema\":";
    out += std::to_string(job_schema_version);
    append_certificate(out, cert);
    out += '}';
    return out;
}

std::string pem_from_der(std::string_view der) {
    static constexpr std::string_view begin = "-----BEGIN CERTIFICATE-----\n", end = "-----END CERTIFICATE-----\n";
    std::string out;
    out.reserve(begin.size() + end.size() + (der.size() + 2) / 3 * 4 + der.size() / 48 + 2);
    out += begin;
    // PEM_write_bio_X509's layout: 64 base64 characters (48 bytes) per line.
    for (std::size_t at = 0; at < der.size(); at += 48) {
        const std::size_t n = std::min<std::size_t>(48, der.size() - at);
        unsigned char line[65];
        const int len = EVP_EncodeBlock(line, reinterpret_cast<const unsigned char*>(der.data() + at), static_cast<int>(n));
        out.append(reinterpret_cast<const char*>(line), static_cast<std::size_t>(len));
        out += '\n';
    }
    out += end;
    return out;
}

std::string encode_decommission_job(const std::string& device_id, const std::string& serial_hex,
                                    const std::string& fingerprint_sha256, const std::string& reason,
                                    std::int64_t requested_at) {
    return nlohmann::json{{"schema", job_schema_version},
                          {"type", std::string(to_string(job_type::decommission))},
                          {"device_id", device_id},
                          {"serial", serial_hex},
                          {"fingerprint_sha256", fingerprint_sha256},
                          {"reason", reason},
                          {"requested_at", requested_at}}
        .dump();
}

std::string encode_journal_line(const device_certificate& cert) {
    std::string out;
    out.reserve(encoded_size(cert));
    append_certificate(out, cert);
    out[0] = '{';  // the first field's comma
    out += '}';
    return out;
}

namespace {
/// The certificate fields shared by a job and a journal line.
device_certificate certificate_from(const nlohmann::json& j) {
    auto text = [&](const char* name) { return string_field(j, name); };
    device_certificate c;
    c.device_id = text("device_id");
    if (!is_safe_device_id(c.device_id)) throw std::invalid_argument("device_id is not a safe device id");
    c.serial_hex = text("serial");
    c.fingerprint_sha256 = text("fingerprint_sha256");
    c.certificate_pem = text("certificate_pem");
    c.broker_id = text("broker_id");
    auto seen = j.find("first_seen");
    if (seen == j.end() || !seen->is_number_integer()) throw std::invalid_argument("missing integer field first_seen");
    c.first_seen = seen->get<std::int64_t>();
    return c;
}
}  // namespace

device_certificate parse_journal_line(std::string_view line) { return certificate_from(parse_json_object(line)); }

namespace {
job decommission_from(const nlohmann::json& j) {
    job out;
    out.type = job_type::decommission;
    out.cert.device_id = string_field(j, "device_id");
    if (!is_safe_device_id(out.cert.device_id)) throw std::invalid_argument("device_id is not a safe device id");
    out.cert.serial_hex = string_field(j, "serial");
    out.cert.fingerprint_sha256 = string_field(j, "fingerprint_sha256");
    out.reason = string_field(j, "reason");
    auto at = j.find("requested_at");
    if (at == j.end() || !at->is_number_integer()) throw std::invalid_argument("missing integer field requested_at");
    out.requested_at = at->get<std::int64_t>();
    return out;
}
}  // namespace

job parse_job(std::string_view payload) {
    const nlohmann::json j = parse_json_object(payload);
    auto schema = j.find("schema");
    if (schema == j.end() || !schema->is_number_integer() || schema->get<int>() != job_schema_version) {
        throw std::invalid_argument("unsupported schema (expected " + std::to_string(job_schema_version) + ")");
    }
    job out;
    const std::string type = string_field(j, "type");
    if (type == to_string(job_type::first_connect)) out.type = job_type::first_connect;
    else if (type == to_string(job_type::certificate_changed)) out.type = job_type::certificate_changed;
    else if (type == to_string(job_type::decommission)) return decommission_from(j);
    else throw std::invalid_argument("unknown job type");
    out.cert = certificate_from(j);
    std::vector<x509_ptr> certs;
    try {
        certs = parse_certificates(out.cert.certificate_pem, "certificate_pem");
    } catch (const std::exception&) {
        throw std::invalid_argument("certificate_pem is not a PEM certificate");
    }
    if (certs.size() != 1) throw std::invalid_argument("certificate_pem holds " + std::to_string(certs.size()) + " certificates, expected 1");
    const std::string actual = fingerprint_hex(certificate_sha256(certs[0].get()));
    if (!same_fingerprint(actual, out.cert.fingerprint_sha256)) {
        throw std::invalid_argument("fingerprint_sha256 does not match certificate_pem");
    }
    out.cert.fingerprint_sha256 = actual;
    return out;
}

}  // namespace devicegate
