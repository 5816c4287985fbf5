// devicegate-ctl's dispatch: global options, the command table, errors to exit codes. The
// commands live in one file per group (revocation.cpp, dead_letters.cpp, enrollment.cpp).
#include "ctl.hpp"

#include "command.hpp"
#include "devicegate/log.hpp"

#include <algorithm>
#include <ctime>
#include <span>

namespace devicegate::ctl {

namespace {

constexpr const char* usage_head = "usage: devicegate-ctl [--redis URL] [--prefix PREFIX] COMMAND\n\ncommands:\n";
constexpr const char* usage_tail = R"(
Redis: --redis, else DEVICEGATE_REDIS_URL, else redis://127.0.0.1:6379
       (redis://[:password@]host[:port][/db], or with Sentinel
       redis-sentinel://[:password@]host[:port][,host[:port]...]/master_name[/db][?sentinel_password=P]);
       key prefix: --prefix, else DEVICEGATE_REDIS_PREFIX, else devicegate:
exit codes: 0 ok, 1 bad arguments, 2 Redis unreachable (down, hung, or refused the login),
            3 unknown device, not revoked, no such dead letter, or no worker reading the jobs,
            4 unexpected data in Redis,
            5 revoked but not confirmed by a replica (revoke again after a failover);
            reconcile: 0 in step, 1 differences (or bad arguments), 2 an error (Redis, ThingsBoard, hawkBit or the worker configuration)
)";

std::string usage_text() {
    return std::string(usage_head) + revocation_usage + brokers_usage + workers_usage + dead_letters_usage +
           registration_usage + reconcile_usage + enrollment_usage + usage_tail;
}

/// Every command group's table.
const std::span<const command> command_groups[] = {revocation_commands,   brokers_commands,   workers_commands,
                                                   dead_letter_commands,  registration_commands,
                                                   reconcile_commands,    enrollment_commands};

const command* find_command(const std::string& name) {
    for (auto group : command_groups) {
        auto it = std::find_if(group.begin(), group.end(), [&](const command& c) { return name == c.name; });
        if (it != group.end()) return &*it;
    }
    return nullptr;
}

// Options that take a value, and switches; any other "-..." is refused.
constexpr const char* value_options[] = {"--redis",  "--prefix",        "--reason",  "--serial",
                                         "--count",  "--max",           "--ttl",     "--ack-timeout",
                                         "--worker-config", "--backend", "--limit",  "--page-size", "--max-idle"};
constexpr const char* switch_options[] = {"--force", "--all", "--decommission", "--fix", "--verbose"};

arguments parse_arguments(const std::vector<std::string>& args) {
    arguments out;
    auto listed = [](const auto& list, const std::string& a) {
        return std::find(std::begin(list), std::end(list), a) != std::end(list);
    };
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (listed(value_options, a)) {
            if (i + 1 >= args.size()) throw usage_error(a + " needs a value");
            out.values[a] = args[++i];
        } else if (listed(switch_options, a)) {
            out.switches.insert(a);
        } else if (a == "-h" || a == "--help") {
            throw usage_error("");
        } else if (!a.empty() && a[0] == '-') {
            throw usage_error("unknown option " + a);
        } else {
            out.words.push_back(a);
        }
    }
    if (out.words.empty()) throw usage_error("missing command");
    return out;
}

/// Runs the command, mapping its errors to exit codes.
int execute(const command& c, const arguments& args, session& s, const redis_options& options, std::ostream& err) {
    try {
        return c.run(args, s);
    } catch (const usage_error& e) {
        err << "devicegate-ctl: " << e.what() << "\n";
        return usage;
    } catch (const not_found_error& e) {
        err << "devicegate-ctl: " << e.what() << "\n";
        return not_found;
    } catch (const service_error& e) {
        err << "devicegate-ctl: " << e.what() << "\n";
        return unreachable;
    } catch (const redis_io_error& e) {
        err << "devicegate-ctl: cannot reach Redis at " << options.describe() << ": " << e.what() << "\n";
        return unreachable;
    } catch (const redis_data_error& e) {
        err << "devicegate-ctl: unexpected data in Redis: " << e.what() << "\n";
        return bad_data;
    }
}

}  // namespace

std::string iso_time(std::int64_t unix_seconds) { return iso_utc(static_cast<std::time_t>(unix_seconds)); }

std::string iso_time_text(const std::string& unix_seconds) {
    try {
        return iso_time(std::stoll(unix_seconds));
    } catch (const std::exception&) {
        return unix_seconds;
    }
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const std::string& env_url,
        const std::string& env_prefix) {
    arguments parsed;
    redis_options options;
    const command* c = nullptr;
    try {
        parsed = parse_arguments(args);
        const std::string* url = parsed.value("--redis");
        options = redis_options::parse_url(url ? *url : env_url.empty() ? "redis://127.0.0.1:6379" : env_url);
        c = find_command(parsed.words[0]);
        if (c == nullptr) throw usage_error("unknown command " + parsed.words[0]);
    } catch (const usage_error& e) {
        if (!*e.what()) {  // -h / --help: asked for, so on stdout and not an error
            out << usage_text();
            return ok;
        }
        err << "devicegate-ctl: " << e.what() << "\n" << usage_text();
        return usage;
    } catch (const std::invalid_argument& e) {
        err << "devicegate-ctl: bad Redis URL: " << e.what() << "\n";
        return usage;
    }
    const std::string* prefix = parsed.value("--prefix");
    session s(options, redis_model{prefix ? *prefix : env_prefix.empty() ? "devicegate:" : env_prefix}, out);
    return execute(*c, parsed, s, options, err);
}

}  // namespace devicegate::ctl
