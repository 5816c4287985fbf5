#include "bridge_store.hpp"

#include "devicegate/job_producer.hpp"
#include "devicegate/pki.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <ctime>

namespace devicegate::bridge {

redis_pool::redis_pool(redis_options options, std::size_t max_idle) : options_(std::move(options)), max_idle_(max_idle) {}

std::unique_ptr<redis_connection> redis_pool::acquire() {
    {
        std::lock_guard lock(mutex_);
        if (!idle_.empty()) {
            auto c = std::move(idle_.back());
            idle_.pop_back();
            return c;
        }
    }
    return std::make_unique<redis_connection>(options_);
}

void redis_pool::release(std::unique_ptr<redis_connection> c) {
    std::lock_guard lock(mutex_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
}

long long enqueue_registration(redis_connection& redis, const redis_model& model, const device_certificate& cert) {
    // The same script and arguments as job_producer::deliver: the plugin's first connect with
    // this certificate then finds the device known and enqueues nothing.
    auto reply = redis.command({"EVAL", first_connect_script, "2", model.device(cert.device_id), model.jobs(),
                                cert.fingerprint_sha256, cert.serial_hex, std::to_string(cert.first_seen),
                                cert.broker_id, encode_job(cert, job_type::first_connect),
                                encode_job(cert, job_type::certificate_changed)});
    return reply_integer(reply.get(), "first-connect script");
}

device_certificate describe_certificate(const std::string& device_id, const std::string& certificate_pem,
                                        const std::string& broker_id) {
    auto certs = parse_certificates(certificate_pem, "issued certificate");
    const auto digest = certificate_sha256(certs.at(0).get());
    device_certificate c;
    c.device_id = device_id;
    c.serial_hex = serial_hex(X509_get0_serialNumber(certs[0].get()));
    // Lower-case, as the plugin submits it (devicegate_plugin.cpp): the script compares strings.
    c.fingerprint_sha256 = to_hex(digest.data(), digest.size());
    for (char& ch : c.fingerprint_sha256) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    c.certificate_pem = certificate_pem;
    c.first_seen = static_cast<std::int64_t>(std::time(nullptr));
    c.broker_id = broker_id;
    return c;
}

std::string serials_key(const redis_model& model, const std::string& device_id) {
    return model.prefix + "bridge:serials:" + device_id;
}

void remember_serial(redis_connection& redis, const redis_model& model, const std::string& device_id,
                     const std::string& serial_hex_value) {
    auto reply = redis.command({"SADD", serials_key(model, device_id), serial_hex_value});
    reply_integer(reply.get(), "SADD");
}

std::vector<std::string> serials_of(redis_connection& redis, const redis_model& model, const std::string& device_id) {
    auto reply = redis.command({"SMEMBERS", serials_key(model, device_id)});
    if (reply->type != REDIS_REPLY_ARRAY) throw redis_data_error(serials_key(model, device_id) + ": not a set");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < reply->elements; ++i) out.push_back(reply_string(reply->element[i], "SMEMBERS"));
    return out;
}

}  // namespace devicegate::bridge
