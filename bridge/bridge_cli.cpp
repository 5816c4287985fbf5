#include "bridge_cli.hpp"

#include <algorithm>
#include <cstdlib>
#include <ostream>

namespace devicegate::bridge {

namespace {

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? v : fallback;
}

cli_args parse_cli(const std::vector<std::string>& args, std::size_t positional, const std::vector<std::string>& value_flags) {
    cli_args p;
    p.redis_url = env_or("DEVICEGATE_REDIS_URL", "redis://127.0.0.1:6379");
    p.prefix = env_or("DEVICEGATE_REDIS_PREFIX", "devicegate:");
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&] {
            if (i + 1 >= args.size()) throw cli_usage_error(a + " needs a value");
            return args[++i];
        };
        if (a == "--redis") p.redis_url = value();
        else if (a == "--prefix") p.prefix = value();
        else if (std::find(value_flags.begin(), value_flags.end(), a) != value_flags.end()) p.values[a] = value();
        else if (a == "-h" || a == "--help") throw cli_usage_error("");
        else if (!a.empty() && a[0] == '-') throw cli_usage_error("unknown option " + a);
        else p.positional.push_back(a);
    }
    if (p.positional.size() != positional) throw cli_usage_error("expected " + std::to_string(positional) + " argument(s)");
    return p;
}

}  // namespace

int run_redis_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const std::string& usage,
                      std::size_t positional, const cli_body& body, const std::vector<std::string>& value_flags) {
    cli_args p;
    redis_options options;
    try {
        p = parse_cli(args, positional, value_flags);
        options = redis_options::parse_url(p.redis_url);
    } catch (const std::exception& e) {
        if (*e.what() != '\0') err << "devicegate-ctl: " << e.what() << "\n";
        err << usage;
        return cli_usage;
    }
    try {
        redis_connection redis(options);
        return body(redis, redis_model{p.prefix}, p, out);
    } catch (const cli_usage_error& e) {
        err << "devicegate-ctl: " << e.what() << "\n" << usage;
        return cli_usage;
    } catch (const redis_io_error& e) {
        err << "devicegate-ctl: Redis " << options.describe() << " unreachable: " << e.what() << "\n";
        return cli_unreachable;
    } catch (const redis_data_error& e) {
        err << "devicegate-ctl: unexpected data in Redis: " << e.what() << "\n";
        return cli_bad_data;
    }
}

}  // namespace devicegate::bridge
