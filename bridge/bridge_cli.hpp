#pragma once
// The operator commands the bridge contributes to devicegate-ctl (enroll-token, wg-peers):
// the same Redis options, environment and exit codes as devicegate-ctl's own commands.
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"

#include <functional>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace devicegate::bridge {

enum cli_exit : int { cli_ok = 0, cli_usage = 1, cli_unreachable = 2, cli_bad_data = 4 };

struct cli_args {
    std::string redis_url;                      // --redis, DEVICEGATE_REDIS_URL, default
    std::string prefix;                         // --prefix, DEVICEGATE_REDIS_PREFIX, default
    std::map<std::string, std::string> values;  // other --flag value pairs
    std::vector<std::string> positional;
};

struct cli_usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

using cli_body = std::function<int(redis_connection&, const redis_model&, const cli_args&, std::ostream&)>;

/// Parses `args` (flags --redis, --prefix and those in `value_flags`; exactly `positional`
/// positional arguments), connects to Redis and runs `body`. Usage errors print `usage`.
int run_redis_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const std::string& usage,
                      std::size_t positional, const cli_body& body, const std::vector<std::string>& value_flags = {});

}  // namespace devicegate::bridge
