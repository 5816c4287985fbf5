// devicegate-ctl workers: the registration workers by their heartbeats (<p>workers, written by
// each devicegate-worker every 5 s and removed when it stops cleanly), so that a worker that
// died shows somewhere: the brokers keep enqueuing, and nothing else says nobody reads.
#include "command.hpp"
#include "ctl.hpp"
#include "devicegate/duration.hpp"
#include "devicegate/fleet_model.hpp"

#include <charconv>
#include <iomanip>

namespace devicegate::ctl {

const char* const workers_usage =
    R"(  workers [--max-idle 30s]                     the job stream's length and every worker with its last
                                               heartbeat (every 5 s); exit 3 if none beat within
                                               --max-idle
)";

namespace {

std::chrono::milliseconds max_idle_of(const arguments& args) {
    const std::string* v = args.value("--max-idle");
    if (v == nullptr) return std::chrono::seconds(30);
    try {
        return parse_duration_in(*v, std::chrono::seconds(1), std::chrono::hours(24));
    } catch (const value_error& e) {
        throw usage_error("--max-idle \"" + *v + "\" " + e.what());
    }
}

int workers(const arguments& args, session& s) {
    if (args.words.size() > 1) throw usage_error("workers takes no arguments");
    const auto max_idle = max_idle_of(args);
    const std::string jobs = s.model().jobs(), key = s.model().workers();
    std::ostream& out = s.out();
    out << "job stream " << jobs << ": " << reply_integer(s.redis().command({"XLEN", jobs}).get(), "XLEN " + jobs)
        << " job(s) waiting or in progress\n";
    const auto beats = reply_hash(s.redis().command({"HGETALL", key}).get(), key);
    const std::int64_t now = unix_ms_now();
    bool live = false;
    for (const auto& [name, value] : beats) {
        std::int64_t at = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), at);
        if (ec != std::errc() || end != value.data() + value.size()) {
            throw redis_data_error(key + " " + name + ": \"" + value + "\" is not a time in ms");
        }
        const std::int64_t age = std::max<std::int64_t>(0, now - at);
        const bool beating = age <= max_idle.count();
        live = live || beating;
        out << "  " << std::left << std::setw(32) << name << (beating ? "live" : "silent") << "  last heartbeat "
            << age / 1000 << "s ago\n";
    }
    if (live) return ok;
    out << "warning: no worker wrote a heartbeat in the last " << max_idle.count() / 1000
        << "s: is devicegate-worker running? (its log; its metrics endpoint; devices are not registered "
           "meanwhile, their jobs wait in the stream)\n";
    return not_found;
}

}  // namespace

const command workers_commands[1] = {{"workers", workers}};

}  // namespace devicegate::ctl
