// devicegate-ctl dlq list | dlq replay: the worker's dead-letter stream (<p>jobs:dead), read
// with core's stream-entry reader (the one the worker reads its jobs with).
#include "command.hpp"

namespace devicegate::ctl {

const char* const dead_letters_usage =
    R"(  dlq list [--count N]                         dead-lettered registration jobs (oldest first,
                                               default 100) with their last error
  dlq replay ID | --all                        put dead-lettered jobs back on the job stream
  dlq delete ID                                drop one dead-lettered job
  dlq trim --max N                             keep only the newest N dead-lettered jobs
)";

namespace {

std::string get(const stream_entry& e, const char* name) {
    auto it = e.fields.find(name);
    return it == e.fields.end() ? std::string() : it->second;
}

std::size_t count_of(const arguments& args) {
    const std::string* v = args.value("--count");
    if (v == nullptr) return 100;
    std::size_t n = 0;
    try {
        n = std::stoul(*v);
    } catch (const std::exception&) {
        throw usage_error("--count needs a number");
    }
    if (n == 0 || (*v)[0] == '-') throw usage_error("--count needs a positive number");
    return n;
}

int list(const arguments& args, session& s) {
    const std::size_t count = count_of(args);
    const std::string key = s.model().dead_jobs();
    auto total = s.redis().command({"XLEN", key});
    auto r = s.redis().command({"XRANGE", key, "-", "+", "COUNT", std::to_string(count)});
    auto entries = reply_stream_entries(r.get(), key);
    for (const auto& e : entries) {
        std::string device = get(e, job_field::device_id);
        s.out() << e.id << "  device=" << (device.empty() ? "-" : device) << " type=" << get(e, job_field::type)
                << " reason=" << get(e, job_field::reason) << " attempts=" << get(e, job_field::attempts)
                << " failed_at=" << iso_time_text(get(e, job_field::failed_at))
                << "\n    error: " << get(e, job_field::error) << "\n";
    }
    const long long n = reply_integer(total.get(), "XLEN " + key);
    if (n == 0) s.out() << "the dead-letter stream is empty\n";
    else if (static_cast<std::size_t>(n) > entries.size()) s.out() << "(" << entries.size() << " of " << n << " shown)\n";
    return 0;
}

int replay(const arguments& args, session& s) {
    const bool all = args.has("--all");
    const std::string id = args.words.size() == 3 ? args.words[2] : "";
    if (id.empty() == !all) throw usage_error("dlq replay needs an entry id or --all");
    const std::string key = s.model().dead_jobs();
    std::size_t replayed = 0;
    std::string from = all ? "-" : id;
    for (;;) {
        auto r = s.redis().command({"XRANGE", key, from, all ? "+" : id, "COUNT", "500"});
        auto entries = reply_stream_entries(r.get(), key);
        if (entries.empty()) break;
        for (const auto& e : entries) {
            // Moved atomically: the job is either still dead or back on the stream, never both or neither.
            s.redis().transaction({{"XADD", s.model().jobs(), "*", job_field::type, get(e, job_field::type),
                                    job_field::job, get(e, job_field::job), job_field::replayed_from, e.id},
                                   {"XDEL", key, e.id}});
            ++replayed;
        }
        if (!all) break;
        from = "(" + entries.back().id;
    }
    if (replayed == 0) {
        if (all) {
            s.out() << "the dead-letter stream is empty\n";
            return 0;
        }
        throw not_found_error("no dead-lettered job " + id + " (devicegate-ctl dlq list shows them)");
    }
    s.out() << "replayed " << replayed << " job(s) onto " << s.model().jobs() << "\n";
    return 0;
}

int remove(const arguments& args, session& s) {
    if (args.words.size() != 3) throw usage_error("dlq delete needs an entry id");
    const std::string key = s.model().dead_jobs();
    auto r = s.redis().command({"XDEL", key, args.words[2]});
    if (reply_integer(r.get(), "XDEL " + key) == 0) {
        throw not_found_error("no dead-lettered job " + args.words[2] + " (devicegate-ctl dlq list shows them)");
    }
    s.out() << "deleted dead-lettered job " << args.words[2] << "\n";
    return 0;
}

int trim(const arguments& args, session& s) {
    if (args.words.size() != 2 || args.value("--max") == nullptr) throw usage_error("dlq trim needs --max N");
    const std::string& v = *args.value("--max");
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 12) {
        throw usage_error("--max needs a number (0 empties the stream)");
    }
    const std::string key = s.model().dead_jobs();
    auto r = s.redis().command({"XTRIM", key, "MAXLEN", v});  // exact: an operator asked for N
    s.out() << "trimmed " << reply_integer(r.get(), "XTRIM " + key) << " dead-lettered job(s); at most " << v
            << " kept\n";
    return 0;
}

int dlq(const arguments& args, session& s) {
    const std::string sub = args.words.size() >= 2 ? args.words[1] : "";
    if (args.words.size() > 3) throw usage_error("too many arguments");
    if (sub == "list") return list(args, s);
    if (sub == "replay") return replay(args, s);
    if (sub == "delete") return remove(args, s);
    if (sub == "trim") return trim(args, s);
    throw usage_error("dlq needs list, replay, delete or trim");
}

}  // namespace

const command dead_letter_commands[1] = {{"dlq", dlq}};

}  // namespace devicegate::ctl
