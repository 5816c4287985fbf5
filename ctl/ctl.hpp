#pragma once
// devicegate-ctl: the operator's commands against the DeviceGate Redis model.
#include <iosfwd>
#include <string>
#include <vector>

namespace devicegate::ctl {

enum exit_code : int {
    ok = 0,
    usage = 1,          // bad arguments
    unreachable = 2,    // Redis could not be reached (reconcile: nor ThingsBoard, hawkBit, the worker config)
    not_found = 3,      // unknown device, nothing to unrevoke, or (workers) no worker reading
    bad_data = 4,       // Redis answered with something DeviceGate did not write
    unreplicated = 5,   // revoked, but no replica confirmed it: a failover now could lose it
};

/// Runs one command line (without argv[0]); output to `out`, errors to `err`.
/// `env_url` / `env_prefix` are DEVICEGATE_REDIS_URL / DEVICEGATE_REDIS_PREFIX (may be empty).
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const std::string& env_url,
        const std::string& env_prefix);

}  // namespace devicegate::ctl
