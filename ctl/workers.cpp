// devicegate-ctl workers: the registration workers as Redis sees them (the job stream's
// consumer groups and their consumers, XINFO), so that a worker that died shows somewhere:
// the brokers keep enqueuing, and nothing else in Redis says that nobody reads the stream.
#include "command.hpp"
#include "ctl.hpp"
#include "devicegate/duration.hpp"

#include <iomanip>
#include <map>

namespace devicegate::ctl {

const char* const workers_usage =
    R"(  workers [--max-idle 60s]                     the job stream and each worker consumer reading it
                                               (one per concurrency slot), with its jobs in progress
                                               and how long ago it last read; exit 3 if none read
                                               within --max-idle
)";

namespace {

using field_map = std::map<std::string, const redisReply*>;

/// XINFO's RESP2 answer for one group or consumer: [name, value, name, value, ...].
field_map fields_of(const redisReply* r, const std::string& what) {
    auto items = reply_array(r, what);
    if (items.size() % 2 != 0) throw redis_data_error(what + ": an odd number of fields");
    field_map out;
    for (std::size_t i = 0; i < items.size(); i += 2) out[reply_string(items[i], what)] = items[i + 1];
    return out;
}

/// An integer field; -1 when absent or nil (a group's lag that Redis cannot tell).
long long number(const field_map& f, const char* name, const std::string& what) {
    auto it = f.find(name);
    if (it == f.end() || is_nil(it->second)) return -1;
    return reply_integer(it->second, what + " " + name);
}

std::string text(const field_map& f, const char* name, const std::string& what) {
    auto it = f.find(name);
    if (it == f.end()) throw redis_data_error(what + ": no field " + name);
    return reply_string(it->second, what + " " + name);
}

std::string seconds_text(long long ms) { return ms < 0 ? "-" : std::to_string(ms / 1000) + "s"; }

std::chrono::milliseconds max_idle_of(const arguments& args) {
    const std::string* v = args.value("--max-idle");
    if (v == nullptr) return std::chrono::seconds(60);
    try {
        return parse_duration_in(*v, std::chrono::seconds(1), std::chrono::hours(24));
    } catch (const value_error& e) {
        throw usage_error("--max-idle \"" + *v + "\" " + e.what());
    }
}

/// One group's line and its workers; true if one of them read within `max_idle`.
bool print_group(session& s, const std::string& key, const redisReply* group, std::chrono::milliseconds max_idle) {
    const std::string what = "XINFO GROUPS " + key;
    const auto g = fields_of(group, what);
    const std::string name = text(g, "name", what);
    const long long lag = number(g, "lag", what);
    std::ostream& out = s.out();
    out << "group " << name << ": " << number(g, "consumers", what) << " consumer(s), " << number(g, "pending", what)
        << " job(s) in progress" << (lag >= 0 ? ", " + std::to_string(lag) + " not read yet" : "") << "\n";
    const std::string cwhat = "XINFO CONSUMERS " + key + " " + name;
    auto consumers = s.redis().command({"XINFO", "CONSUMERS", key, name});
    bool active = false;
    for (const redisReply* c : reply_array(consumers.get(), cwhat)) {
        const auto f = fields_of(c, cwhat);
        const long long idle = number(f, "idle", cwhat);  // ms since its last read (or claim)
        active = active || (idle >= 0 && idle <= max_idle.count());
        out << "  " << std::left << std::setw(32) << text(f, "name", cwhat) << " in progress "
            << std::setw(6) << number(f, "pending", cwhat) << " last read " << seconds_text(idle) << " ago\n";
    }
    return active;
}

int workers(const arguments& args, session& s) {
    if (args.words.size() > 1) throw usage_error("workers takes no arguments");
    const auto max_idle = max_idle_of(args);
    const std::string key = s.model().jobs();
    std::ostream& out = s.out();
    out << "job stream " << key << ": "
        << reply_integer(s.redis().command({"XLEN", key}).get(), "XLEN " + key) << " job(s)\n";
    auto groups = s.redis().command({"XINFO", "GROUPS", key});
    bool active = false;
    if (!is_error(groups.get())) {  // an error: no stream yet ("ERR no such key")
        for (const redisReply* g : reply_array(groups.get(), "XINFO GROUPS " + key)) {
            active = print_group(s, key, g, max_idle) || active;
        }
    }
    if (active) return ok;
    out << "warning: no worker read the job stream in the last " << max_idle.count() / 1000
        << "s: is devicegate-worker running? (its log; its metrics endpoint; devices are not registered "
           "meanwhile, their jobs wait in the stream)\n";
    return not_found;
}

}  // namespace

const command workers_commands[1] = {{"workers", workers}};

}  // namespace devicegate::ctl
