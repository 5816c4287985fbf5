#include "ctl.hpp"

#include "devicegate/denylist.hpp"
#include "devicegate/device_id.hpp"
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <nlohmann/json.hpp>

#include <ctime>
#include <map>
#include <optional>
#include <ostream>

namespace devicegate::ctl {

namespace {

constexpr const char* usage_text = R"(usage: devicegate-ctl [--redis URL] [--prefix PREFIX] COMMAND

commands:
  revoke DEVICE-ID [--reason TEXT] [--force]   refuse and disconnect a device (--force: even one
                                               that never connected)
  revoke --serial HEX [--reason TEXT]          refuse and disconnect one certificate
  unrevoke DEVICE-ID | --serial HEX            admit it again
  status DEVICE-ID                             revocation, first seen, registration state
  list-revoked                                 every revoked device id and serial
  dlq list [--count N]                         dead-lettered registration jobs (oldest first,
                                               default 100) with their last error
  dlq replay ID | --all                        put dead-lettered jobs back on the job stream

Redis: --redis, else DEVICEGATE_REDIS_URL, else redis://127.0.0.1:6379
       (redis://[:password@]host[:port][/db]); key prefix: --prefix, else
       DEVICEGATE_REDIS_PREFIX, else devicegate:
exit codes: 0 ok, 1 bad arguments, 2 Redis unreachable, 3 unknown device, not revoked, or no such dead letter,
            4 unexpected data in Redis
)";

struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
struct not_found_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string iso_time(std::int64_t t) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

struct target {
    bool serial = false;
    std::string value;
};

struct parsed {
    std::string redis_url;
    std::string prefix;
    std::string command;
    std::optional<target> subject;
    std::string reason;
    bool force = false;
    // dlq
    std::string dlq_action;
    std::string dlq_id;
    bool all = false;
    std::size_t count = 100;
};

parsed parse(const std::vector<std::string>& args, const std::string& env_url, const std::string& env_prefix) {
    parsed p;
    p.redis_url = env_url.empty() ? "redis://127.0.0.1:6379" : env_url;
    p.prefix = env_prefix.empty() ? "devicegate:" : env_prefix;
    std::vector<std::string> positional;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&](const char* flag) {
            if (i + 1 >= args.size()) throw usage_error(std::string(flag) + " needs a value");
            return args[++i];
        };
        if (a == "--redis") p.redis_url = value("--redis");
        else if (a == "--prefix") p.prefix = value("--prefix");
        else if (a == "--reason") p.reason = value("--reason");
        else if (a == "--force") p.force = true;
        else if (a == "--all") p.all = true;
        else if (a == "--count") {
            const std::string v = value("--count");
            try {
                p.count = std::stoul(v);
            } catch (const std::exception&) {
                throw usage_error("--count needs a number");
            }
            if (p.count == 0 || v[0] == '-') throw usage_error("--count needs a positive number");
        }
        else if (a == "--serial") {
            auto hex = normalize_serial_hex(value("--serial"));
            if (!hex) throw usage_error("--serial needs a hex serial number (e.g. 4F2A..., as the broker logs it)");
            p.subject = target{true, *hex};
        } else if (a == "-h" || a == "--help") throw usage_error("");
        else if (!a.empty() && a[0] == '-') throw usage_error("unknown option " + a);
        else positional.push_back(a);
    }
    if (positional.empty()) throw usage_error("missing command");
    p.command = positional[0];
    if (p.command == "dlq") {
        if (positional.size() < 2 || (positional[1] != "list" && positional[1] != "replay")) {
            throw usage_error("dlq needs list or replay");
        }
        p.dlq_action = positional[1];
        if (positional.size() > 3) throw usage_error("too many arguments");
        if (positional.size() == 3) p.dlq_id = positional[2];
        if (p.dlq_action == "replay" && p.dlq_id.empty() == !p.all) throw usage_error("dlq replay needs an entry id or --all");
        return p;
    }
    if (positional.size() > 2) throw usage_error("too many arguments");
    if (positional.size() == 2) {
        if (p.subject) throw usage_error("give a device id or --serial, not both");
        if (!is_safe_device_id(positional[1])) {
            throw usage_error("\"" + positional[1] + "\" is not a device id ([A-Za-z0-9][A-Za-z0-9._:@-]{0,127})");
        }
        p.subject = target{false, positional[1]};
    }
    return p;
}

std::map<std::string, std::string> hash_fields(redis_connection& redis, const std::string& key) {
    auto reply = redis.command({"HGETALL", key});
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        throw redis_data_error(key + ": expected a hash, got " +
                               (is_error(reply.get()) ? std::string(reply->str, reply->len)
                                                      : std::string(reply_type_name(reply.get()))));
    }
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
        out[reply_string(reply->element[i], key)] = reply_string(reply->element[i + 1], key);
    }
    return out;
}

std::optional<std::string> hash_get(redis_connection& redis, const std::string& key, const std::string& field) {
    auto reply = redis.command({"HGET", key, field});
    if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
    return reply_string(reply.get(), key);
}

std::string describe_entry(const std::string& json) {
    try {
        auto j = nlohmann::json::parse(json);
        std::string out = "reason=\"" + j.value("reason", std::string()) + "\"";
        if (j.contains("at") && j["at"].is_number_integer()) out += " at=" + iso_time(j["at"].get<std::int64_t>());
        return out;
    } catch (const nlohmann::json::exception&) {
        return "(unreadable entry)";
    }
}

int cmd_revoke(redis_connection& redis, const redis_model& model, const parsed& p, std::ostream& out, bool revoke) {
    if (!p.subject) throw usage_error(p.command + " needs a device id or --serial HEX");
    const target& t = *p.subject;
    const std::string list = t.serial ? model.revoked_serials() : model.revoked_devices();
    const std::string what = (t.serial ? "serial " : "device ") + t.value;
    if (revoke) {
        if (!t.serial && !p.force) {
            auto known = redis.command({"EXISTS", model.device(t.value)});
            if (reply_integer(known.get(), "EXISTS") == 0) {
                throw not_found_error("unknown device " + t.value +
                                      " (it never connected to a DeviceGate broker); check the id, or use --force "
                                      "to revoke it before its first connect");
            }
        }
        nlohmann::json entry{{"reason", p.reason.empty() ? "revoked by operator" : p.reason},
                             {"at", static_cast<std::int64_t>(std::time(nullptr))}};
        auto set = redis.command({"HSET", list, t.value, entry.dump()});
        reply_integer(set.get(), "HSET " + list);
    } else {
        auto del = redis.command({"HDEL", list, t.value});
        if (reply_integer(del.get(), "HDEL " + list) == 0) throw not_found_error(what + " is not revoked");
    }
    auto notified = redis.command(
        {"PUBLISH", model.revocations_channel(), encode_denylist_change({revoke, t.serial, t.value})});
    const long long brokers = reply_integer(notified.get(), "PUBLISH");
    out << (revoke ? "revoked " : "unrevoked ") << what << "; " << brokers << " broker(s) notified";
    if (brokers == 0) out << " (none is listening now: brokers apply it when they reconnect to Redis)";
    out << "\n";
    return ok;
}

int cmd_status(redis_connection& redis, const redis_model& model, const parsed& p, std::ostream& out) {
    if (!p.subject || p.subject->serial) throw usage_error("status needs a device id");
    const std::string& id = p.subject->value;
    auto device = hash_fields(redis, model.device(id));
    auto by_id = hash_get(redis, model.revoked_devices(), id);
    std::optional<std::string> by_serial;
    if (auto it = device.find("serial"); it != device.end()) {
        if (auto hex = normalize_serial_hex(it->second)) by_serial = hash_get(redis, model.revoked_serials(), *hex);
    }
    if (device.empty() && !by_id) throw not_found_error("unknown device " + id);
    auto field = [&](const char* name) {
        auto it = device.find(name);
        return it == device.end() || it->second.empty() ? std::string("-") : it->second;
    };
    out << "device:       " << id << "\n";
    if (by_id) out << "revoked:      yes, by device id, " << describe_entry(*by_id) << "\n";
    else if (by_serial) out << "revoked:      yes, by serial, " << describe_entry(*by_serial) << "\n";
    else out << "revoked:      no\n";
    std::string seen = field("first_seen");
    if (seen != "-") {
        try {
            seen = iso_time(std::stoll(seen));
        } catch (const std::exception&) {
        }
    }
    out << "first seen:   " << seen << " (broker " << field("broker") << ")\n";
    out << "serial:       " << field("serial") << "\n";
    out << "fingerprint:  " << field("fingerprint") << "\n";
    out << "thingsboard:  " << field("thingsboard");
    if (field("thingsboard_id") != "-") out << " (device " << field("thingsboard_id") << ")";
    out << "\n";
    out << "hawkbit:      " << field("hawkbit") << "\n";
    std::string registered = field("registered_at");
    if (registered != "-") {
        try {
            registered = iso_time(std::stoll(registered));
        } catch (const std::exception&) {
        }
    }
    out << "registered:   " << registered << "\n";
    out << "last error:   " << field("last_error") << "\n";
    return ok;
}

using entry_fields = std::vector<std::pair<std::string, std::string>>;

/// XRANGE reply -> (id, fields) pairs.
std::vector<std::pair<std::string, entry_fields>> stream_entries(const redisReply* r, const std::string& key) {
    if (is_error(r)) throw redis_data_error(key + ": " + std::string(r->str, r->len));
    if (r->type != REDIS_REPLY_ARRAY) throw redis_data_error(key + ": expected a stream");
    std::vector<std::pair<std::string, entry_fields>> out;
    for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY) {
            throw redis_data_error(key + ": unexpected stream entry");
        }
        entry_fields fields;
        for (std::size_t f = 0; f + 1 < e->element[1]->elements; f += 2) {
            fields.emplace_back(reply_string(e->element[1]->element[f], key), reply_string(e->element[1]->element[f + 1], key));
        }
        out.emplace_back(reply_string(e->element[0], key), std::move(fields));
    }
    return out;
}

std::string get(const entry_fields& fields, const char* name) {
    for (const auto& [k, v] : fields) {
        if (k == name) return v;
    }
    return "";
}

int cmd_dlq_list(redis_connection& redis, const redis_model& model, const parsed& p, std::ostream& out) {
    const std::string key = model.dead_jobs();
    auto total = redis.command({"XLEN", key});
    auto r = redis.command({"XRANGE", key, "-", "+", "COUNT", std::to_string(p.count)});
    auto entries = stream_entries(r.get(), key);
    for (const auto& [id, fields] : entries) {
        std::string failed = get(fields, "failed_at");
        try {
            failed = iso_time(std::stoll(failed));
        } catch (const std::exception&) {
        }
        std::string device = get(fields, "device_id");
        out << id << "  device=" << (device.empty() ? "-" : device) << " type=" << get(fields, "type")
            << " reason=" << get(fields, "reason") << " attempts=" << get(fields, "attempts") << " failed_at=" << failed
            << "\n    error: " << get(fields, "error") << "\n";
    }
    const long long n = reply_integer(total.get(), "XLEN " + key);
    if (n == 0) out << "the dead-letter stream is empty\n";
    else if (static_cast<std::size_t>(n) > entries.size()) out << "(" << entries.size() << " of " << n << " shown)\n";
    return ok;
}

int cmd_dlq_replay(redis_connection& redis, const redis_model& model, const parsed& p, std::ostream& out) {
    const std::string key = model.dead_jobs();
    std::size_t replayed = 0;
    std::string from = p.all ? "-" : p.dlq_id;
    for (;;) {
        auto r = redis.command({"XRANGE", key, from, p.all ? "+" : p.dlq_id, "COUNT", "500"});
        auto entries = stream_entries(r.get(), key);
        if (entries.empty()) break;
        for (const auto& [id, fields] : entries) {
            std::string job = get(fields, "job"), type = get(fields, "type");
            // Moved atomically: the job is either still dead or back on the stream, never both or neither.
            std::vector<std::vector<std::string>> tx{{"MULTI"},
                                                     {"XADD", model.jobs(), "*", "type", type, "job", job, "replayed_from", id},
                                                     {"XDEL", key, id},
                                                     {"EXEC"}};
            auto replies = redis.pipeline(tx);
            if (is_error(replies.back().get()) || replies.back()->type != REDIS_REPLY_ARRAY) {
                throw redis_data_error("replaying " + id + " failed");
            }
            ++replayed;
        }
        if (!p.all) break;
        from = "(" + entries.back().first;
    }
    if (replayed == 0) {
        if (p.all) {
            out << "the dead-letter stream is empty\n";
            return ok;
        }
        throw not_found_error("no dead-lettered job " + p.dlq_id + " (devicegate-ctl dlq list shows them)");
    }
    out << "replayed " << replayed << " job(s) onto " << model.jobs() << "\n";
    return ok;
}

int cmd_list(redis_connection& redis, const redis_model& model, std::ostream& out) {
    std::size_t n = 0;
    for (auto [key, kind] : {std::pair{model.revoked_devices(), "device"}, std::pair{model.revoked_serials(), "serial"}}) {
        for (const auto& [value, entry] : hash_fields(redis, key)) {
            out << kind << " " << value << " " << describe_entry(entry) << "\n";
            ++n;
        }
    }
    if (n == 0) out << "nothing is revoked\n";
    return ok;
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const std::string& env_url,
        const std::string& env_prefix) {
    parsed p;
    redis_options options;
    try {
        p = parse(args, env_url, env_prefix);
        options = redis_options::parse_url(p.redis_url);
        if (p.command != "revoke" && p.command != "unrevoke" && p.command != "status" && p.command != "list-revoked" &&
            p.command != "dlq") {
            throw usage_error("unknown command " + p.command);
        }
    } catch (const usage_error& e) {
        if (*e.what()) err << "devicegate-ctl: " << e.what() << "\n";
        err << usage_text;
        return usage;
    } catch (const std::invalid_argument& e) {
        err << "devicegate-ctl: bad Redis URL: " << e.what() << "\n";
        return usage;
    }
    redis_model model{p.prefix};
    try {
        redis_connection redis(options);
        if (p.command == "revoke") return cmd_revoke(redis, model, p, out, true);
        if (p.command == "unrevoke") return cmd_revoke(redis, model, p, out, false);
        if (p.command == "status") return cmd_status(redis, model, p, out);
        if (p.command == "dlq") {
            return p.dlq_action == "list" ? cmd_dlq_list(redis, model, p, out) : cmd_dlq_replay(redis, model, p, out);
        }
        return cmd_list(redis, model, out);
    } catch (const usage_error& e) {
        err << "devicegate-ctl: " << e.what() << "\n";
        return usage;
    } catch (const not_found_error& e) {
        err << "devicegate-ctl: " << e.what() << "\n";
        return not_found;
    } catch (const redis_io_error& e) {
        err << "devicegate-ctl: cannot reach Redis at " << options.describe() << ": " << e.what() << "\n";
        return unreachable;
    } catch (const redis_data_error& e) {
        err << "devicegate-ctl: unexpected data in Redis: " << e.what() << "\n";
        return bad_data;
    }
}

}  // namespace devicegate::ctl
