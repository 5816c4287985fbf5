#include "devicegate/job.hpp"

#include "devicegate/device_id.hpp"
#include "devicegate/json_fields.hpp"
#include "devicegate/pki.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
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
nlohmann::json to_json(const device_certificate& c) {
    return {{"device_id", c.device_id},       {"serial", c.serial_hex},       {"fingerprint_sha256", c.fingerprint_sha256},
            {"certificate_pem", c.certificate_pem}, {"first_seen", c.first_seen}, {"broker_id", c.broker_id}};
}
}  // namespace

std::string encode_job(const device_certificate& cert, job_type type) {
    auto j = to_json(cert);
    j["schema"] = job_schema_version;
    j["type"] = std::string(to_string(type));
    return j.dump();
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

std::string encode_journal_line(const device_certificate& cert) { return to_json(cert).dump(); }

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
