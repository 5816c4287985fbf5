#pragma once
// Logging goes through one sink so the core stays free of mosquitto headers: the plugin
// installs mosquitto_log_printf, tests install a capturing sink.
#include <ctime>
#include <functional>
#include <string>
#include <string_view>

namespace devicegate {

enum class log_level { debug, info, notice, warning, error };

using log_sink = std::function<void(log_level, std::string_view)>;

/// Thread-safe if the sink is. The plugin's sink calls mosquitto_log_printf only on the
/// broker thread and queues lines from background threads for the next TICK, because
/// mosquitto 2.0's logger may publish to $SYS/broker/log (log_dest topic), which is not
/// thread-safe (src/logging.c).
class logger {
public:
    explicit logger(log_sink sink = {}) : sink_(std::move(sink)) {}
    void log(log_level level, std::string_view line) const {
        if (sink_) sink_(level, line);
    }
    void debug(std::string_view line) const { log(log_level::debug, line); }
    void info(std::string_view line) const { log(log_level::info, line); }
    void notice(std::string_view line) const { log(log_level::notice, line); }
    void warning(std::string_view line) const { log(log_level::warning, line); }
    void error(std::string_view line) const { log(log_level::error, line); }

private:
    log_sink sink_;
};

/// Makes untrusted text (client ids, certificate fields, file contents) safe for one log
/// line: printable ASCII only, quotes and backslashes escaped, bounded length.
std::string log_safe(std::string_view text, std::size_t max_len = 128);
/// log_safe for an unquoted key=value field (a client id as the client claimed it): spaces
/// escaped too (\x20), so that the value cannot add fields or words of its own to the line.
std::string log_word(std::string_view text, std::size_t max_len = 128);

/// A time as ISO 8601 UTC, "2026-11-29T14:00:00Z" (log stamps, certificate dates, ctl output).
std::string iso_utc(std::time_t t);

}  // namespace devicegate
