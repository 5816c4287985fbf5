// devicegate-ctl revoke | unrevoke | status | list-revoked: the deny-list through core's
// revocation_store (the same class the plugin's denylist_sync reads it with).
#include "command.hpp"
#include "ctl.hpp"
#include "devicegate/device_id.hpp"
#include "devicegate/revocation_store.hpp"

#include <chrono>
#include <ctime>

namespace devicegate::ctl {

const char* const revocation_usage =
    R"(  revoke DEVICE-ID [--reason TEXT] [--force] [--decommission]
                                               refuse and disconnect a device (--force: even one
                                               that never connected; --decommission: the worker
                                               also deletes it in ThingsBoard and hawkBit)
  revoke --serial HEX [--reason TEXT]          refuse and disconnect one certificate
  unrevoke DEVICE-ID | --serial HEX            admit it again
  status DEVICE-ID                             revocation, first seen, registration state
  list-revoked                                 every revoked device id and serial
)";

namespace {

/// The device id or --serial of the command line, if any.
std::optional<revocation_target> subject_of(const arguments& args) {
    std::optional<revocation_target> out;
    if (const std::string* serial = args.value("--serial")) {
        auto hex = normalize_serial_hex(*serial);
        if (!hex) throw usage_error("--serial needs a hex serial number (e.g. 4F2A..., as the broker logs it)");
        out = revocation_target{true, *hex};
    }
    if (args.words.size() > 2) throw usage_error("too many arguments");
    if (args.words.size() == 2) {
        if (out) throw usage_error("give a device id or --serial, not both");
        const std::string& id = args.words[1];
        if (!is_safe_device_id(id)) {
            throw usage_error("\"" + id + "\" is not a device id ([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})");
        }
        out = revocation_target{false, id};
    }
    return out;
}

revocation_target required_subject(const arguments& args) {
    auto subject = subject_of(args);
    if (!subject) throw usage_error(args.words[0] + " needs a device id or --serial HEX");
    return *subject;
}

std::string describe_entry(const std::string& json) {
    auto entry = parse_revocation_entry(json);
    if (!entry) return "(unreadable entry)";
    std::string out = "reason=\"" + entry->reason + "\"";
    if (entry->at) out += " at=" + iso_time(*entry->at);
    return out;
}

void report(session& s, const std::string& done, const revocation_target& t, long long brokers) {
    s.out() << done << " " << t.describe() << "; " << brokers << " broker(s) notified";
    if (brokers == 0) s.out() << " (none is listening now: brokers apply it when they reconnect to Redis)";
    s.out() << "\n";
}

/// How long revoke waits for a replica to confirm (WAIT); replicas on a LAN answer in
/// milliseconds (WAIT asks them at once with REPLCONF GETACK).
constexpr std::chrono::milliseconds replication_timeout{1000};

int report_replication(session& s, const replication_status& r) {
    if (!r.expected) return ok;  // a single Redis without replicas: nothing to wait for
    if (r.safe()) {
        s.out() << "replicated to " << r.acknowledged << " replica(s)\n";
        return ok;
    }
    s.out() << "warning: not confirmed by any replica within " << r.timeout.count() << " ms ("
            << (r.replicas == 0 ? std::string("the master has no connected replica")
                                : std::to_string(r.replicas) + " connected replica(s) did not answer")
            << "): a failover now could lose this revocation; re-run revoke after the failover\n";
    return unreplicated;
}

int revoke(const arguments& args, session& s) {
    const revocation_target t = required_subject(args);
    if (t.serial && args.has("--decommission")) throw usage_error("--decommission needs a device id, not --serial");
    const std::string* reason = args.value("--reason");
    if (!t.serial && !args.has("--force")) {
        auto known = s.redis().command({"EXISTS", s.model().device(t.value)});
        if (reply_integer(known.get(), "EXISTS") == 0) {
            throw not_found_error("unknown device " + t.value +
                                  " (it never connected to a DeviceGate broker); check the id, or use --force "
                                  "to revoke it before its first connect");
        }
    }
    revocation_store store(s.redis(), s.model());
    const revocation_entry entry{reason == nullptr || reason->empty() ? "revoked by operator" : *reason,
                                 static_cast<std::int64_t>(std::time(nullptr))};
    revoke_ack ack(args, s, t);  // brokers.cpp
    report(s, "revoked", t, store.revoke(t, entry));
    ack.wait_and_report();
    if (args.has("--decommission")) {
        // After the revocation: the worker refuses a decommission for a device the deny-list
        // does not hold. If this fails the device stays revoked; running the command again is safe.
        store.enqueue_decommission(t.value, entry.reason, entry.at.value_or(0));
        s.out() << "decommission of " << t.value << " enqueued (devicegate-ctl status " << t.value
                << " shows it when the worker is done)\n";
    }
    return report_replication(s, store.wait_replicated(replication_timeout));
}

int unrevoke(const arguments& args, session& s) {
    const revocation_target t = required_subject(args);
    revocation_store store(s.redis(), s.model());
    auto brokers = store.unrevoke(t);
    if (!brokers) throw not_found_error(t.describe() + " is not revoked");
    report(s, "unrevoked", t, *brokers);
    return 0;
}

int status(const arguments& args, session& s) {
    auto subject = subject_of(args);
    if (!subject || subject->serial) throw usage_error("status needs a device id");
    const std::string& id = subject->value;
    const std::string key = s.model().device(id);
    auto device = reply_hash(s.redis().command({"HGETALL", key}).get(), key);
    revocation_store store(s.redis(), s.model());
    auto by_id = store.entry({false, id});
    std::optional<std::string> by_serial;
    if (auto it = device.find(device_field::serial); it != device.end()) {
        if (auto hex = normalize_serial_hex(it->second)) by_serial = store.entry({true, *hex});
    }
    if (device.empty() && !by_id) throw not_found_error("unknown device " + id);
    auto field = [&](const char* name) {
        auto it = device.find(name);
        return it == device.end() || it->second.empty() ? std::string("-") : it->second;
    };
    std::ostream& out = s.out();
    out << "device:       " << id << "\n";
    if (by_id) out << "revoked:      yes, by device id, " << describe_entry(*by_id) << "\n";
    else if (by_serial) out << "revoked:      yes, by serial, " << describe_entry(*by_serial) << "\n";
    else out << "revoked:      no\n";
    // The enrollment API writes the first-connect job at enrollment, as broker_id
    // "devicegate-bridge" (bridge/service.cpp): it is no broker.
    const std::string seen_by = field(device_field::broker);
    out << "first seen:   " << iso_time_text(field(device_field::first_seen))
        << (seen_by == "devicegate-bridge" ? " (enrolled through devicegate-bridge)\n" : " (broker " + seen_by + ")\n");
    out << "serial:       " << field(device_field::serial) << "\n";
    out << "fingerprint:  " << field(device_field::fingerprint) << "\n";
    out << "thingsboard:  " << field(device_field::thingsboard);
    if (field(device_field::thingsboard_id) != "-") out << " (device " << field(device_field::thingsboard_id) << ")";
    out << "\n";
    out << "hawkbit:      " << field(device_field::hawkbit) << "\n";
    out << "registered:   " << iso_time_text(field(device_field::registered_at)) << "\n";
    out << "last error:   " << field(device_field::last_error) << "\n";
    print_device_location(s, id);  // brokers.cpp
    if (field(device_field::decommissioned) != "-") {
        out << "decommissioned: " << iso_time_text(field(device_field::decommissioned))
            << " (devicegate-ctl reregister " << id << " brings it back after an unrevoke)\n";
    }
    return 0;
}

int list_revoked(const arguments&, session& s) {
    revocation_store store(s.redis(), s.model());
    std::size_t n = 0;
    for (auto [serials, kind] : {std::pair{false, "device"}, std::pair{true, "serial"}}) {
        for (const auto& [value, entry] : store.entries(serials)) {
            s.out() << kind << " " << value << " " << describe_entry(entry) << "\n";
            ++n;
        }
    }
    if (n == 0) s.out() << "nothing is revoked\n";
    return 0;
}

}  // namespace

const command revocation_commands[4] = {
    {"revoke", revoke}, {"unrevoke", unrevoke}, {"status", status}, {"list-revoked", list_revoked}};

}  // namespace devicegate::ctl
