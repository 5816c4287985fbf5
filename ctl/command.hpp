#pragma once
// What devicegate-ctl's command groups share: the parsed command line, the errors that map
// to exit codes, and the Redis session. One .cpp per command group; ctl.cpp dispatches.
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"
#include "devicegate/revocation_store.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace devicegate::ctl {

/// Bad arguments (exit code 1).
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// Unknown device, nothing to unrevoke, no such dead letter (exit code 3).
struct not_found_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// ThingsBoard, hawkBit or the worker's configuration failed a command (exit code 2, like an
/// unreachable Redis): what() names the backend, the call and the status.
struct service_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The command line: positional words (words[0] is the command), options with a value
/// (--reason TEXT) and switches (--force), in any order.
struct arguments {
    std::vector<std::string> words;
    std::map<std::string, std::string> values;
    std::set<std::string> switches;

    const std::string* value(const std::string& option) const {
        auto it = values.find(option);
        return it == values.end() ? nullptr : &it->second;
    }
    bool has(const std::string& option_switch) const { return switches.count(option_switch) > 0; }
};

/// What a command works with. The connection is opened on first use, so a command checks
/// its arguments before Redis is asked anything.
class session {
public:
    session(redis_options options, redis_model model, std::ostream& out)
        : options_(std::move(options)), model_(std::move(model)), out_(out) {}
    redis_connection& redis() {
        if (!redis_) redis_ = std::make_unique<redis_connection>(options_);
        return *redis_;
    }
    const redis_model& model() const noexcept { return model_; }
    std::ostream& out() noexcept { return out_; }

private:
    redis_options options_;
    redis_model model_;
    std::ostream& out_;
    std::unique_ptr<redis_connection> redis_;
};

using command_function = int (*)(const arguments&, session&);
struct command {
    const char* name;
    command_function run;
};

/// "2026-11-28T21:00:00Z".
std::string iso_time(std::int64_t unix_seconds);
/// A unix-seconds text as iso_time, any other text unchanged.
std::string iso_time_text(const std::string& unix_seconds);

// revocation.cpp: revoke, unrevoke, status, list-revoked.
extern const char* const revocation_usage;
extern const command revocation_commands[4];
// dead_letters.cpp: dlq list, dlq replay, dlq delete, dlq trim.
extern const char* const dead_letters_usage;
extern const command dead_letter_commands[1];
// registration.cpp: reregister, and the re-enqueueing reconcile --fix shares with it.
extern const char* const registration_usage;
extern const command registration_commands[1];
enum class reregistration { enqueued, on_next_connect };
/// Forgets the registration of a device Redis knows and enqueues a first-connect job from the
/// certificate the worker stored (one transaction); without a stored certificate only forgets
/// it (on_next_connect). Throws not_found_error (no device hash), usage_error (unreadable
/// stored certificate), the Redis errors.
reregistration reregister_device(session& s, const std::string& id);
// reconcile.cpp: reconcile (Redis against ThingsBoard and hawkBit).
extern const char* const reconcile_usage;
extern const command reconcile_commands[1];
// enrollment.cpp: enroll-token, wg-peers (the enrollment API's operator side, bridge/).
extern const char* const enrollment_usage;
extern const command enrollment_commands[2];
// workers.cpp: workers (the job stream's consumers).
extern const char* const workers_usage;
extern const command workers_commands[1];
// brokers.cpp: brokers, and the fleet parts of status and revoke.
extern const char* const brokers_usage;
extern const command brokers_commands[1];
/// status: the brokers that hold a session of the device (the fleet registry).
void print_device_location(session& s, const std::string& device_id);
/// revoke: how many live brokers applied the revocation. Constructed before the revocation
/// is written (remembers the live brokers, clears old acknowledgements); wait_and_report()
/// after it waits up to --ack-timeout (default 1s, 0 = do not wait) and prints
/// "acknowledged by 2 of 3 live brokers (missing: broker-c; ...)".
class revoke_ack {
public:
    revoke_ack(const arguments& args, session& s, const revocation_target& target);
    void wait_and_report();

private:
    session& s_;
    std::string key_;
    std::chrono::milliseconds timeout_{1000};
    bool already_revoked_ = false;
    std::vector<std::string> live_;
};

}  // namespace devicegate::ctl
