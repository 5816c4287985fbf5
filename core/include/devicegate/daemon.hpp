#pragma once
// What DeviceGate's long-running programs (devicegate-worker, devicegate-bridge, the fakes)
// share: their environment as a map, timestamped log lines on stderr, and SIGINT/SIGTERM
// taken by one thread with sigwait.
#include "devicegate/log.hpp"

#include <csignal>
#include <map>
#include <string>

namespace devicegate {

/// Every environment variable (NAME -> value).
std::map<std::string, std::string> environment_variables();

/// "warning", "notice", anything else: info.
log_level log_threshold(const std::string& name);

/// Timestamped lines on stderr at or above `min_level`, one writer at a time.
logger stderr_logger(log_level min_level);

/// SIGINT and SIGTERM blocked in this thread and every thread it starts, so that one thread
/// takes them with sigwait; SIGPIPE ignored (a peer that hangs up is an error value, not a signal).
sigset_t block_stop_signals();

}  // namespace devicegate
