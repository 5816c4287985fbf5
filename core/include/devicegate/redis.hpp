#pragma once
// One RAII header for hiredis (0.14, RESP2): unique_ptr aliases, connection options, and the
// one place where hiredis errors become exceptions. Background threads and tools only: every
// call here may block on the network.
#include <hiredis/hiredis.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate {

struct redis_context_deleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct redis_reply_deleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using redis_context_ptr = std::unique_ptr<redisContext, redis_context_deleter>;
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

/// The link failed (connect, I/O, protocol): reconnect and retry.
struct redis_io_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// Redis answered, but not what we need (an error reply, a wrong type): the data is bad.
struct redis_data_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct redis_options {
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string username;  // a Redis 6+ ACL user; "" = the default user
    std::string password;  // never logged
    int db = 0;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds command_timeout{2000};

    /// "redis://[[user]:password@]host[:port][/db]"; throws std::invalid_argument with the
    /// expected form (the password is not repeated in the message).
    static redis_options parse_url(const std::string& url);
    /// host:port/db, without the password.
    std::string describe() const;
};

class redis_connection {
public:
    /// Connects, authenticates and selects the db; throws redis_io_error (or
    /// redis_data_error for a refused AUTH/SELECT).
    explicit redis_connection(const redis_options& options);

    /// Runs one command; throws redis_io_error on a broken link; returns error replies as
    /// replies (check with is_error).
    redis_reply_ptr command(const std::vector<std::string>& argv);
    /// Sends every command, then reads every reply (one round trip); throws redis_io_error.
    /// Wrap the commands in MULTI/EXEC to make them atomic.
    std::vector<redis_reply_ptr> pipeline(const std::vector<std::vector<std::string>>& commands);
    /// Sends without reading (for SUBSCRIBE).
    void append(const std::vector<std::string>& argv);
    /// The next reply, waiting at most `timeout`; nullopt on timeout. Throws redis_io_error.
    std::optional<redis_reply_ptr> next_reply(std::chrono::milliseconds timeout);

    redisContext* get() noexcept { return ctx_.get(); }

private:
    redis_context_ptr ctx_;
    std::string where_;
};

bool is_error(const redisReply* r) noexcept;
/// A string or status reply's text; throws redis_data_error for any other type.
std::string reply_string(const redisReply* r, std::string_view what);
/// An integer reply; throws redis_data_error for any other type.
long long reply_integer(const redisReply* r, std::string_view what);
std::string_view reply_type_name(const redisReply* r) noexcept;

}  // namespace devicegate
