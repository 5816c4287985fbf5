// devicegate-ctl reregister ID: register a device again in both targets (ThingsBoard device,
// credentials, attributes; hawkBit target), e.g. after it was deleted there by hand. The worker
// skips targets recorded as registered for the current certificate, so the registration fields
// go; then a first-connect job is enqueued from the certificate the worker stored in the device
// hash. A device registered before the worker stored it: the hash's `fingerprint` goes too, so
// the plugin enqueues a first-connect job (core/src/job_producer.cpp, first_connect_script) on
// the device's next connect to a broker that has not admitted that certificate since it started
// (a broker plans one job per certificate and run: gate::plan_job). `reconcile --fix` re-enqueues
// through the same reregister_device.
#include "command.hpp"
#include "devicegate/device_id.hpp"
#include "devicegate/job.hpp"
#include "devicegate/pki.hpp"

#include <ctime>

namespace devicegate::ctl {

const char* const registration_usage =
    R"(  reregister ID                                register the device again in ThingsBoard and hawkBit
                                               (e.g. after it was deleted there by hand)
)";

reregistration reregister_device(session& s, const std::string& id) {
    const std::string key = s.model().device(id);
    auto known = s.redis().command({"EXISTS", key});
    if (reply_integer(known.get(), "EXISTS") == 0) {
        throw not_found_error("unknown device " + id + " (it never connected to a DeviceGate broker)");
    }
    auto device = reply_hash(s.redis().command({"HGETALL", key}).get(), key);
    const std::vector<std::string> forget{"HDEL", key, device_field::thingsboard, device_field::thingsboard_id,
                                          device_field::thingsboard_fingerprint, device_field::hawkbit,
                                          device_field::registered_at, device_field::decommissioned};
    const std::vector<std::string> note{"HSET", key, device_field::last_error, "reregister requested by operator"};
    auto pem = device.find(device_field::certificate);
    if (pem == device.end() || pem->second.empty()) {
        std::vector<std::string> forget_all = forget;
        forget_all.push_back(device_field::fingerprint);
        s.redis().transaction({forget_all, note});
        return reregistration::on_next_connect;
    }
    device_certificate cert;
    try {
        auto certs = parse_certificates(pem->second, "the stored certificate of " + id);
        if (certs.size() != 1) throw pki_error("not one certificate");
        cert.fingerprint_sha256 = fingerprint_hex(certificate_sha256(certs.front().get()));
        cert.serial_hex = serial_hex(X509_get0_serialNumber(certs.front().get()));
    } catch (const std::exception& e) {
        throw usage_error("the stored certificate of " + id + " is unreadable: " + e.what());
    }
    cert.device_id = id;
    cert.certificate_pem = pem->second;
    cert.first_seen = static_cast<std::int64_t>(std::time(nullptr));
    if (auto seen = device.find(device_field::first_seen); seen != device.end()) {
        try {
            cert.first_seen = std::stoll(seen->second);  // the attribute keeps the real first connect
        } catch (const std::exception&) {
        }
    }
    cert.broker_id = "devicegate-ctl";
    // One transaction: the worker must never see the job with the old registration still recorded.
    s.redis().transaction({forget, note, {"HSET", key, device_field::fingerprint, cert.fingerprint_sha256},
                           {"XADD", s.model().jobs(), "*", job_field::type, "first_connect", job_field::job,
                            encode_job(cert, job_type::first_connect)}});
    return reregistration::enqueued;
}

namespace {

int reregister(const arguments& args, session& s) {
    if (args.words.size() != 2) throw usage_error("reregister needs exactly one device id");
    const std::string& id = args.words[1];
    if (!is_safe_device_id(id)) throw usage_error("reregister: not a device id: " + id);
    if (reregister_device(s, id) == reregistration::on_next_connect) {
        s.out() << "device " << id
                << ": registration forgotten (no stored certificate: registered by an older worker); it is "
                   "enqueued on its next connect to a broker that has not admitted this certificate since it "
                   "started\n";
        return 0;
    }
    s.out() << "device " << id << ": registration job enqueued (devicegate-ctl status " << id
            << " shows the progress)\n";
    return 0;
}

}  // namespace

const command registration_commands[1] = {{"reregister", reregister}};

}  // namespace devicegate::ctl
