// devicegate-ctl brokers, the fleet part of status, and the acknowledgements of a revoke:
// every broker's view through the fleet registry the plugins keep in Redis (core's
// fleet_model.hpp; docs/redis.md "The fleet").
#include "command.hpp"
#include "devicegate/duration.hpp"
#include "devicegate/fleet_model.hpp"
#include "devicegate/revocation_store.hpp"

#include <algorithm>
#include <iomanip>
#include <sstream>
#include <thread>

namespace devicegate::ctl {

const char* const brokers_usage =
    R"(  brokers                                      every broker with its heartbeat, sessions, deny-list
                                               age and job backlog, live or dead
  (status also shows the brokers the device is connected to; revoke waits up to
   --ack-timeout DURATION, default 1s, 0 = no wait, for the live brokers to acknowledge)
)";

namespace {

/// "850ms", "12s", "3m", "2h" ago/old.
std::string age_text(std::int64_t ms) {
    if (ms < 0) ms = 0;
    if (ms < 1000) return std::to_string(ms) + "ms";
    if (ms < 120'000) return std::to_string(ms / 1000) + "s";
    if (ms < 7'200'000) return std::to_string(ms / 60'000) + "m";
    return std::to_string(ms / 3'600'000) + "h";
}

std::string field_or_dash(const broker_view& b, const char* name) {
    auto it = b.fields.find(name);
    return it == b.fields.end() || it->second.empty() ? "-" : it->second;
}

std::string denylist_age(const broker_view& b) {
    auto synced = b.number(broker_field::denylist_synced_at);
    auto beat = b.number(broker_field::last_heartbeat);
    if (!synced || !beat) return "-";
    if (*synced == 0) return "never";
    // As of the broker's last heartbeat, not now: a dead broker's copy is not ageing anywhere.
    std::string out = age_text(*beat - *synced * 1000);
    if (field_or_dash(b, broker_field::denylist_link) == "down") out += " (link down)";
    return out;
}

int brokers(const arguments& args, session& s) {
    if (args.words.size() > 1) throw usage_error("brokers takes no arguments");
    auto all = load_brokers(s.redis(), s.model());
    std::ostream& out = s.out();
    if (all.empty()) {
        out << "no broker has written a heartbeat (brokers with redis_url and fleet_sessions on do, every "
               "broker_heartbeat_interval)\n";
        return 0;
    }
    const auto now = unix_ms_now();
    std::size_t width = 6;
    for (const auto& b : all) width = std::max(width, b.id.size());
    out << std::left << std::setw(static_cast<int>(width) + 2) << "BROKER" << std::setw(6) << "STATE"
        << std::setw(11) << "HEARTBEAT" << std::setw(10) << "SESSIONS" << std::setw(22) << "DENYLIST-AGE"
        << std::setw(13) << "JOB-BACKLOG" << std::setw(8) << "CLONES" << std::setw(11) << "TAKEOVERS"
        << std::setw(9) << "VERSION"
        << "HOST\n";
    std::size_t live = 0;
    for (const auto& b : all) {
        auto beat = b.number(broker_field::last_heartbeat);
        live += b.live(now) ? 1 : 0;
        out << std::setw(static_cast<int>(width) + 2) << b.id << std::setw(6) << (b.live(now) ? "live" : "dead")
            << std::setw(11) << (beat ? age_text(now - *beat) + " ago" : "-") << std::setw(10)
            << field_or_dash(b, broker_field::sessions) << std::setw(22) << denylist_age(b) << std::setw(13)
            << field_or_dash(b, broker_field::job_backlog) << std::setw(8) << field_or_dash(b, broker_field::clones)
            << std::setw(11) << field_or_dash(b, broker_field::takeovers) << std::setw(9)
            << field_or_dash(b, broker_field::version) << field_or_dash(b, broker_field::host) << "\n";
    }
    out << live << " of " << all.size() << " brokers live\n";
    return 0;
}

std::string ack_key(const redis_model& model, const revocation_target& t) {
    return model.revoke_ack(t.serial ? "serial" : "device", t.value);
}

/// No broker ever wrote a heartbeat (fleet_sessions off, or older brokers): the fleet lines
/// would only be noise.
bool fleet_unused(session& s) {
    return reply_integer(s.redis().command({"EXISTS", s.model().brokers()}).get(), "EXISTS") == 0;
}

}  // namespace

void print_device_location(session& s, const std::string& device_id) {
    if (fleet_unused(s)) return;
    auto where = locate_device(s.redis(), s.model(), device_id, unix_ms_now());
    std::ostream& out = s.out();
    if (where.empty()) {
        out << "connected:    no (no live broker holds a session)\n";
        return;
    }
    for (const auto& w : where) {
        out << "connected:    broker " << w.broker << " since " << iso_time(w.session.connected_at / 1000)
            << " from " << w.session.address << " (serial " << w.session.serial << ")\n";
    }
    if (where.size() > 1) {
        out << "warning:      sessions on " << where.size()
            << " brokers: a takeover under way, or a cloned key (docs/operations.md, \"A device appears on two "
               "brokers\")\n";
    }
}

revoke_ack::revoke_ack(const arguments& args, session& s, const revocation_target& target)
    : s_(s), key_(ack_key(s.model(), target)) {
    const std::string* timeout = args.value("--ack-timeout");
    try {
        // "0" (no wait) as the usage says; otherwise a duration with its unit.
        timeout_ = !timeout ? std::chrono::milliseconds(1000)
                   : *timeout == "0"
                       ? std::chrono::milliseconds(0)
                       : parse_duration_in(*timeout, std::chrono::milliseconds(0), std::chrono::minutes(10));
    } catch (const value_error& e) {
        throw usage_error("--ack-timeout \"" + *timeout + "\" " + e.what());
    }
    if (timeout_.count() == 0 || fleet_unused(s)) {
        timeout_ = std::chrono::milliseconds(0);
        return;
    }
    revocation_store store(s.redis(), s.model());
    already_revoked_ = store.entry(target).has_value();  // brokers applied it before: no news to them
    live_ = live_brokers(s.redis(), s.model(), unix_ms_now());
    s.redis().command({"DEL", key_});  // acks of an earlier revoke of the same value do not count
}

void revoke_ack::wait_and_report() {
    if (timeout_.count() == 0) return;
    std::ostream& out = s_.out();
    if (live_.empty()) {
        out << "no live broker in the fleet registry: no acknowledgement to wait for\n";
        return;
    }
    if (already_revoked_) {
        out << "it was already revoked: the brokers applied it before (no acknowledgement expected)\n";
        return;
    }
    std::vector<std::string> missing = live_;
    for (auto deadline = std::chrono::steady_clock::now() + timeout_;;) {
        auto acked = reply_strings(s_.redis().command({"SMEMBERS", key_}).get(), key_);
        std::erase_if(missing, [&](const std::string& b) { return std::find(acked.begin(), acked.end(), b) != acked.end(); });
        if (missing.empty() || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    out << "acknowledged by " << live_.size() - missing.size() << " of " << live_.size() << " live brokers";
    if (!missing.empty()) {
        out << " (missing: ";
        for (std::size_t i = 0; i < missing.size(); ++i) out << (i ? ", " : "") << missing[i];
        out << "; they apply it on their next deny-list sync)";
    }
    out << "\n";
}

const command brokers_commands[1] = {{"brokers", brokers}};

}  // namespace devicegate::ctl
