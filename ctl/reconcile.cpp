// devicegate-ctl reconcile [--fix]: Redis's device records against ThingsBoard's devices and
// hawkBit's targets (issue 14 item 6). Redis is the worker's memory, not the truth: a device
// deleted in a backend by hand is never created again by itself (docs/worker.md).
//
// Order, and why it tolerates a fleet that changes meanwhile: Redis first (SCAN: a key present
// for the whole scan is returned at least once), then each backend paged in creation order (new
// devices land on later pages). Every candidate finding is then confirmed by a point lookup
// (the device by name, the target by id, the device hash by EXISTS), so a device created,
// registered or shifted between pages during the scan is not reported.
//
// --fix re-enqueues registrations exactly as `devicegate-ctl reregister` does (the same
// function, once per device). It never deletes anything: orphans and revoked devices are
// reported only (devicegate-ctl revoke ID --decommission removes a revoked one).
#include "command.hpp"
#include "devicegate/daemon.hpp"
#include "devicegate/device_id.hpp"
#include "devicegate/job.hpp"
#include "devicegate/log.hpp"
#include "devicegate/pki.hpp"
#include "inventory.hpp"
#include "worker_config.hpp"

#include <array>
#include <cstdint>
#include <iomanip>

namespace devicegate::ctl {

const char* const reconcile_usage =
    R"(  reconcile [--fix] [--backend thingsboard|hawkbit|all] [--worker-config FILE]
            [--limit N | --verbose] [--page-size N]
                                               compare the devices in Redis with ThingsBoard and
                                               hawkBit; --fix re-enqueues missing devices and
                                               wrong credentials, never deletes (backends and
                                               Redis from the worker's FILE, default
                                               /etc/devicegate/devicegate-worker.conf)
)";

namespace {

using worker::target;

constexpr const char* default_worker_config = "/etc/devicegate/devicegate-worker.conf";
constexpr int differences_found = 1;

enum class kind { missing, orphan, credentials, revoked };
constexpr std::array<const char*, 4> kind_names{"missing", "orphan", "credentials", "revoked"};
constexpr std::array<target, 2> targets{target::thingsboard, target::hawkbit};

struct finding {
    kind what;
    target where;
    std::string device;  // log_safe'd when printed: a backend's names are not ours
    std::string detail;
    std::string outcome;
    bool resolved = false;  // --fix acted on it
};

/// What a device hash says, as far as reconciling goes.
struct redis_device {
    std::map<std::string, std::string> fields;
    bool revoked = false;
    std::string field(const char* name) const {
        auto it = fields.find(name);
        return it == fields.end() ? std::string() : it->second;
    }
    bool retired() const { return revoked || !field(device_field::decommissioned).empty(); }
    /// The plugin's `fingerprint`; a hash only the worker wrote (a job from another source)
    /// has only the one it registered.
    std::string current_fingerprint() const {
        std::string fp = field(device_field::fingerprint);
        return fp.empty() ? field(device_field::thingsboard_fingerprint) : fp;
    }
    std::string state(target t) const {
        return field(t == target::thingsboard ? device_field::thingsboard : device_field::hawkbit);
    }
};

struct settings {
    bool fix = false;
    std::array<bool, 2> checked{true, true};
    std::size_t limit = 50;  // finding lines; SIZE_MAX with --verbose
    worker::inventory_options inventory;
    worker::worker_config config;
    std::string config_file;
};

struct backend_tally {
    std::size_t listed = 0, in_step = 0, pending = 0;
    std::array<std::size_t, 4> found{};
};

struct report {
    std::map<std::string, redis_device> devices;
    std::size_t ignored_keys = 0;
    std::array<backend_tally, 2> tally{};
    std::vector<finding> findings;
    std::size_t reenqueued = 0;
    void add(finding f) {
        ++tally[static_cast<std::size_t>(f.where)].found[static_cast<std::size_t>(f.what)];
        findings.push_back(std::move(f));
    }
};

std::size_t number(const arguments& args, const char* option, std::size_t fallback, std::size_t min, std::size_t max) {
    const std::string* v = args.value(option);
    if (v == nullptr) return fallback;
    if (v->empty() || v->size() > 9 || v->find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(*v) < min || std::stoul(*v) > max) {
        throw usage_error(std::string(option) + " needs a number " + std::to_string(min) + ".." + std::to_string(max));
    }
    return std::stoul(*v);
}

settings parse_settings(const arguments& args) {
    if (args.words.size() != 1) throw usage_error("reconcile takes no device id (it compares every device)");
    settings out;
    out.fix = args.has("--fix");
    if (const std::string* b = args.value("--backend")) {
        if (*b == "thingsboard") out.checked = {true, false};
        else if (*b == "hawkbit") out.checked = {false, true};
        else if (*b != "all") throw usage_error("--backend needs thingsboard, hawkbit or all");
    }
    if (args.has("--verbose") && args.value("--limit") != nullptr) throw usage_error("give --limit or --verbose, not both");
    out.limit = args.has("--verbose") ? SIZE_MAX : number(args, "--limit", 50, 0, 1000000);
    out.inventory.page_size = number(args, "--page-size", 100, 1, 500);
    const std::string* file = args.value("--worker-config");
    out.config_file = file ? *file : default_worker_config;
    std::string text;
    try {
        text = read_file(out.config_file, 1 << 20);
    } catch (const std::exception& e) {
        throw service_error("reconcile: cannot read the worker configuration " + out.config_file + " (" + e.what() +
                            "; give --worker-config FILE)");
    }
    try {
        out.config = worker::parse_worker_config(text, environment_variables());
    } catch (const std::exception& e) {
        throw service_error("reconcile: worker configuration " + out.config_file + ": " + e.what());
    }
    return out;
}

/// A Redis glob matching `text` literally (the prefix is the operator's).
std::string glob_literal(const std::string& text) {
    std::string out;
    for (char c : text) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

/// Every device hash (SCAN, one HGETALL pipeline per batch) and the deny-list.
void read_redis(session& s, report& r) {
    const std::string prefix = s.model().device("");
    std::string cursor = "0";
    do {
        auto page = s.redis().command({"SCAN", cursor, "MATCH", glob_literal(prefix) + "*", "COUNT", "500"});
        auto parts = reply_array(page.get(), "SCAN", 2);
        cursor = reply_string(parts[0], "SCAN cursor");
        std::vector<std::vector<std::string>> reads;
        std::vector<std::string> ids;
        for (const std::string& key : reply_strings(parts[1], "SCAN keys")) {
            const std::string id = key.substr(prefix.size());
            if (!is_safe_device_id(id)) ++r.ignored_keys;
            else if (r.devices.count(id) == 0) ids.push_back(id), reads.push_back({"HGETALL", key});
        }
        auto replies = reads.empty() ? std::vector<redis_reply_ptr>{} : s.redis().pipeline(reads);
        for (std::size_t i = 0; i < ids.size(); ++i) {
            auto fields = reply_hash(replies[i].get(), reads[i][1]);
            if (!fields.empty()) r.devices[ids[i]].fields = std::move(fields);  // empty: deleted meanwhile
        }
    } while (cursor != "0");
    auto by_device = reply_hash(s.redis().command({"HGETALL", s.model().revoked_devices()}).get(), "revoked:device");
    auto by_serial = reply_hash(s.redis().command({"HGETALL", s.model().revoked_serials()}).get(), "revoked:serial");
    for (auto& [id, d] : r.devices) {
        auto serial = normalize_serial_hex(d.field(device_field::serial));
        d.revoked = by_device.count(id) != 0 || (serial && by_serial.count(*serial) != 0);
    }
}

/// The worker's clients with the worker's credentials (one login for the whole run).
struct backend_clients {
    explicit backend_clients(const worker::worker_config& c)
        : tb_gate(target::thingsboard, c.auth_retry_initial, c.auth_retry_max, metrics),
          hb_gate(target::hawkbit, c.auth_retry_initial, c.auth_retry_max, metrics),
          tb_setup(target::thingsboard, c.auth_retry_initial, c.auth_retry_max, metrics),
          hb_setup(target::hawkbit, c.auth_retry_initial, c.auth_retry_max, metrics),
          session(c.thingsboard, c.http_timeout, metrics, tb_gate),
          thingsboard(c.thingsboard, c.http_timeout, session, metrics, tb_setup),
          hawkbit(c.hawkbit, c.http_timeout, metrics, hb_gate, hb_setup) {}
    worker::worker_metrics metrics;  // the worker's clients count; the ctl shows none of it
    worker::login_gate tb_gate, hb_gate;
    worker::setup_lookup tb_setup, hb_setup;  // unused by the reads: profile, type and tag lookups
    worker::thingsboard_session session;
    worker::thingsboard_client thingsboard;
    worker::hawkbit_client hawkbit;
};

bool exists(backend_clients& c, target t, const std::string& id, const worker::inventory_options& o) {
    return t == target::thingsboard ? worker::thingsboard_device_exists(c.thingsboard, id, o)
                                    : worker::hawkbit_target_exists(c.hawkbit, id, o);
}

/// "0a1b...": log_safe cuts and marks the cut.
std::string short_fp(const std::string& fp) { return fp.empty() ? "(none)" : log_safe(fp, 16); }

/// ThingsBoard only: the credentials of a device registered for its current certificate.
void check_credentials(backend_clients& c, const settings& st, const std::string& id, const redis_device& d,
                       const std::string& uuid, report& r) {
    auto creds = worker::read_thingsboard_credentials(c.thingsboard, uuid, st.inventory);
    if (!creds) {  // deleted since it was listed
        if (!exists(c, target::thingsboard, id, st.inventory)) {
            r.add({kind::missing, target::thingsboard, id, "registered in Redis, deleted in ThingsBoard during the scan"});
        }
        return;
    }
    const std::string want = d.current_fingerprint();
    if (creds->type == "X509_CERTIFICATE" && same_fingerprint(creds->fingerprint_sha256, want)) {
        ++r.tally[0].in_step;
        return;
    }
    r.add({kind::credentials, target::thingsboard, id,
           "ThingsBoard holds " + log_safe(creds->type, 32) +
               (creds->type == "X509_CERTIFICATE" ? " " + short_fp(creds->fingerprint_sha256) : std::string()) +
               ", Redis's current certificate is " + short_fp(want)});
}

/// Backend entries Redis has no device hash for, confirmed with EXISTS now (one pipeline): a
/// device that connected during the scan is not an orphan.
void report_orphans(session& s, target t, const std::map<std::string, std::string>& present, report& r) {
    std::vector<std::string> candidates;
    std::vector<std::vector<std::string>> checks;
    for (const auto& [name, uuid] : present) {
        if (r.devices.count(name) != 0) continue;
        candidates.push_back(name);
        // A name outside the device id alphabet cannot be a DeviceGate device: nothing to ask.
        if (is_safe_device_id(name)) checks.push_back({"EXISTS", s.model().device(name)});
    }
    auto replies = checks.empty() ? std::vector<redis_reply_ptr>{} : s.redis().pipeline(checks);
    std::size_t next = 0;
    const std::string where = t == target::thingsboard ? "in ThingsBoard" : "in hawkBit";
    for (const std::string& name : candidates) {
        if (is_safe_device_id(name) && reply_integer(replies[next++].get(), "EXISTS") != 0) continue;
        r.add({kind::orphan, t, name, where + ", unknown to Redis (reported only: reconcile never deletes)"});
    }
}

/// One backend: list it, compare with Redis, confirm every candidate.
void compare(backend_clients& c, const settings& st, target t, session& s, report& r) {
    const auto listed = t == target::thingsboard ? worker::list_thingsboard_devices(c.thingsboard, st.inventory)
                                                 : worker::list_hawkbit_targets(c.hawkbit, st.inventory);
    backend_tally& tally = r.tally[static_cast<std::size_t>(t)];
    tally.listed = listed.size();
    std::map<std::string, std::string> present;  // name -> ThingsBoard uuid
    for (const auto& e : listed) present.emplace(e.name, e.thingsboard_id);
    const char* product = t == target::thingsboard ? "ThingsBoard" : "hawkBit";
    for (const auto& [id, d] : r.devices) {
        auto it = present.find(id);
        if (d.retired()) {
            if (it != present.end()) {
                r.add({kind::revoked, t, id,
                       std::string(d.revoked ? "revoked" : "decommissioned") + " in Redis, still in " + product +
                           " (devicegate-ctl revoke " + id + " --decommission removes it)"});
            }
        } else if (d.state(t) != registration_state::registered || d.current_fingerprint().empty() ||
                   (t == target::thingsboard &&
                    !same_fingerprint(d.field(device_field::thingsboard_fingerprint), d.current_fingerprint()))) {
            ++tally.pending;  // its job is queued, retrying or dead-lettered: the worker's business
        } else if (it == present.end()) {
            if (!exists(c, t, id, st.inventory)) r.add({kind::missing, t, id, std::string("registered in Redis, absent in ") + product});
            else ++tally.in_step;  // created or shifted between pages during the scan
        } else if (t == target::thingsboard) {
            check_credentials(c, st, id, d, it->second, r);
        } else {
            ++tally.in_step;
        }
    }
    report_orphans(s, t, present, r);
}

/// --fix: one re-enqueue per device, for missing devices and wrong credentials.
void fix(session& s, report& r) {
    std::map<std::string, std::string> done;  // device -> outcome
    for (finding& f : r.findings) {
        if (f.what != kind::missing && f.what != kind::credentials) continue;
        auto it = done.find(f.device);
        if (it == done.end()) {
            std::string outcome;
            try {
                if (reregister_device(s, f.device) == reregistration::enqueued) {
                    outcome = "re-enqueued";
                    ++r.reenqueued;
                } else {  // registered by a worker that did not store certificates yet
                    outcome = "registration forgotten (no stored certificate): enqueued when it next connects to a "
                              "broker that has not admitted it since it started";
                }
            } catch (const usage_error& e) {
                outcome = std::string("NOT re-enqueued: ") + e.what();
            } catch (const not_found_error& e) {
                outcome = std::string("NOT re-enqueued: ") + e.what();
            }
            it = done.emplace(f.device, outcome).first;
        }
        f.outcome = it->second;
        f.resolved = !it->second.starts_with("NOT");
    }
}

void print(std::ostream& out, const settings& st, const report& r) {
    std::size_t shown = 0;
    for (const finding& f : r.findings) {
        if (shown++ >= st.limit) break;
        out << kind_names[static_cast<std::size_t>(f.what)] << " " << worker::to_string(f.where) << " "
            << log_safe(f.device) << ": " << f.detail << (f.outcome.empty() ? "" : "; " + f.outcome) << "\n";
    }
    if (r.findings.size() > st.limit) {
        out << "(" << r.findings.size() - st.limit << " more: --verbose shows all)\n";
    }
    std::size_t retired = 0;
    for (const auto& [id, d] : r.devices) retired += d.retired() ? 1 : 0;
    out << "redis: " << r.devices.size() << " devices (" << retired << " revoked or decommissioned)";
    if (r.ignored_keys != 0) out << "; " << r.ignored_keys << " keys ignored (not a device id)";
    out << "\n" << std::left << std::setw(14) << "" << std::right << std::setw(12) << "thingsboard" << std::setw(10)
        << "hawkbit" << "\n";
    auto row = [&](const std::string& name, auto value) {
        out << std::left << std::setw(14) << name << std::right;
        for (std::size_t t = 0; t < 2; ++t) {
            out << std::setw(t == 0 ? 12 : 10) << (st.checked[t] ? std::to_string(value(r.tally[t])) : "-");
        }
        out << "\n";
    };
    row("listed", [](const backend_tally& t) { return t.listed; });
    row("in step", [](const backend_tally& t) { return t.in_step; });
    row("pending", [](const backend_tally& t) { return t.pending; });
    for (std::size_t k = 0; k < kind_names.size(); ++k) {
        if (static_cast<kind>(k) != kind::credentials) row(kind_names[k], [k](const backend_tally& t) { return t.found[k]; });
    }
    // Only ThingsBoard holds credentials.
    out << std::left << std::setw(14) << "credentials" << std::right << std::setw(12)
        << (st.checked[0] ? std::to_string(r.tally[0].found[static_cast<std::size_t>(kind::credentials)]) : "-")
        << std::setw(10) << "-" << "\n";
}

int run_reconcile(const settings& st, session& s) {
    report r;
    read_redis(s, r);
    backend_clients clients(st.config);
    for (target t : targets) {
        if (st.checked[static_cast<std::size_t>(t)]) compare(clients, st, t, s, r);
    }
    if (st.fix) fix(s, r);
    print(s.out(), st, r);
    std::size_t open = 0;
    for (const finding& f : r.findings) open += f.resolved ? 0 : 1;
    if (r.findings.empty()) s.out() << "result: in step\n";
    else s.out() << "result: " << r.findings.size() << " differences" << (st.fix ? "; " + std::to_string(r.reenqueued) +
                    " devices re-enqueued, " + std::to_string(open) + " left (orphans and revoked devices are never deleted)" : "")
                 << "\n";
    return open == 0 ? 0 : differences_found;
}

int reconcile(const arguments& args, session& s) {
    settings st = parse_settings(args);
    // The worker's Redis and prefix, unless the command line names others.
    const std::string* url = args.value("--redis");
    const redis_options options = url ? redis_options::parse_url(*url) : st.config.redis;
    session redis_side(options, args.value("--prefix") ? s.model() : redis_model{st.config.redis_prefix}, s.out());
    try {
        return run_reconcile(st, redis_side);
    } catch (const worker::target_failure& e) {
        std::string what = e.what();
        if (e.paused && what.ends_with("; consumption paused")) what.resize(what.size() - 20);
        throw service_error("reconcile: " + what + (e.paused ? " (the credentials come from " + st.config_file + ")" : ""));
    } catch (const redis_io_error& e) {
        throw service_error("reconcile: cannot reach Redis at " + options.describe() + ": " + e.what());
    }
}

}  // namespace

const command reconcile_commands[1] = {{"reconcile", reconcile}};

}  // namespace devicegate::ctl
