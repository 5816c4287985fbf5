#pragma once
// One RAII header for hiredis (0.14, RESP2): unique_ptr aliases, connection options, the one
// place where hiredis errors become exceptions, and typed reply readers. Background threads
// and tools only: every call here may block on the network.
//
// The readers follow redis-plus-plus's reply parsing (src/sw/redis++/reply.h: parse<T>()
// checks the reply type, turns an error reply into an exception): every caller asks for the
// shape it needs and gets either that shape or a redis_data_error naming what it got. No
// caller outside redis_reply.cpp looks at REDIS_REPLY_* or element[].
#include "devicegate/ossl.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace devicegate {

using redis_context_ptr = std::unique_ptr<redisContext, c_deleter<redisFree>>;
using redis_reply_ptr = std::unique_ptr<redisReply, c_deleter<freeReplyObject>>;

/// The link failed (connect, I/O, protocol): reconnect and retry.
struct redis_io_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// Redis answered, but not what we need (an error reply, a wrong type): the data is bad.
struct redis_data_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One host:port (a sentinel, or the master a sentinel named).
struct redis_endpoint {
    std::string host;
    int port = 0;
    std::string describe() const {  // host:port, [v6 address]:port
        const bool v6 = host.find(':') != std::string::npos;
        return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    }
    bool operator==(const redis_endpoint&) const = default;
};

struct redis_options {
    std::string host = "127.0.0.1";
    int port = 6379;
    std::string username;  // a Redis 6+ ACL user; "" = the default user
    std::string password;  // never logged
    int db = 0;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds command_timeout{2000};

    // ---- Sentinel (redis-sentinel:// URLs); `host`/`port` are unused then: the master's
    // address is asked from the sentinels on every connect (docs/redis.md "Sentinel").
    std::vector<redis_endpoint> sentinels;  // empty: a plain redis:// URL
    std::string master_name;
    std::string sentinel_username;  // "" with a password: the sentinels' default user
    std::string sentinel_password;  // "" = no AUTH to the sentinels; never logged
    /// Connect and command timeout towards each sentinel: a dead one is skipped quickly.
    std::chrono::milliseconds sentinel_timeout{500};

    bool via_sentinel() const noexcept { return !sentinels.empty(); }

    /// "redis://[[user]:password@]host[:port][/db]" or
    /// "redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"
    /// "[?sentinel_user=U&sentinel_password=P]" (sentinel port 26379 by default); throws
    /// std::invalid_argument with the expected form (the password is not repeated).
    static redis_options parse_url(const std::string& url);
    /// host:port/db, or "sentinel master 'name' via h1:p1,h2:p2 db 0"; never a password.
    std::string describe() const;
};

class redis_connection {
public:
    /// Connects, authenticates and selects the db; throws redis_io_error (or
    /// redis_data_error for a refused AUTH/SELECT). With sentinels: asks them in order for
    /// the master, connects to it, authenticates, selects and checks that ROLE says
    /// "master"; throws redis_io_error naming what each sentinel and node said otherwise.
    explicit redis_connection(const redis_options& options);

    /// Runs one command; throws redis_io_error on a broken link and for the error replies
    /// that mean "not the master (any more)": READONLY, LOADING, MASTERDOWN (the caller
    /// reconnects, which asks the sentinels again); returns other error replies as replies
    /// (read them with the typed readers below).
    redis_reply_ptr command(const std::vector<std::string>& argv);
    /// Sends every command, then reads every reply (one round trip); throws redis_io_error
    /// (also for READONLY, LOADING, MASTERDOWN in any reply).
    /// Wrap the commands in MULTI/EXEC to make them atomic.
    std::vector<redis_reply_ptr> pipeline(const std::vector<std::vector<std::string>>& commands);
    /// MULTI, the commands, EXEC in one round trip; throws redis_data_error if the
    /// transaction was refused or one of its commands failed. Returns EXEC's reply.
    redis_reply_ptr transaction(const std::vector<std::vector<std::string>>& commands);
    /// Sends without reading (for SUBSCRIBE).
    void append(const std::vector<std::string>& argv);
    /// The next reply, waiting at most `timeout`; nullopt on timeout. Throws redis_io_error.
    std::optional<redis_reply_ptr> next_reply(std::chrono::milliseconds timeout);

    /// ROLE: throws redis_io_error unless this node says "master". Returns how many replicas
    /// the master lists (connected ones).
    long long expect_master();
    /// As expect_master(), reading a ROLE reply the caller got in its own pipeline (one round
    /// trip for the writes and the check).
    long long expect_master(const redisReply* role);
    /// The node this connection talks to (for sentinel URLs: the discovered master).
    const redis_endpoint& address() const noexcept { return address_; }
    bool via_sentinel() const noexcept { return via_sentinel_; }
    /// "127.0.0.1:6380/0", with " (master 'name' from sentinel 127.0.0.1:26379)" for
    /// sentinel URLs; never a password.
    const std::string& describe() const noexcept { return where_; }

    redisContext* get() noexcept { return ctx_.get(); }

private:
    /// Connects to `at` with the data node's credentials and db.
    void open(const redis_endpoint& at, const redis_options& options);
    void discover(const redis_options& options);
    /// "redis <where>: <hiredis's error>", a read timeout spelled as one (hiredis reports it
    /// as EAGAIN's "Resource temporarily unavailable").
    std::string link_error() const;
    /// The reply, or redis_io_error when there is none; READONLY/LOADING/MASTERDOWN throw too.
    redis_reply_ptr checked(void* reply) const;

    redis_context_ptr ctx_;
    std::chrono::milliseconds command_timeout_{};
    redis_endpoint address_;
    bool via_sentinel_ = false;
    std::string where_;
};

/// What wait_replicated() learned: whether the writes so far reached a replica. Redis
/// replicates asynchronously: a write the master acknowledged but no replica received is lost
/// if Sentinel promotes a replica now (https://redis.io/docs/management/replication/).
struct replication_status {
    long long replicas = 0;      // replicas the master lists as connected (ROLE)
    long long acknowledged = 0;  // how many confirmed the writes within the timeout (WAIT)
    bool expected = false;       // replicas > 0, or a Sentinel URL: a failover could lose an unconfirmed write
    std::chrono::milliseconds timeout{0};
    /// False when a replica was expected and none confirmed.
    bool safe() const noexcept { return !expected || acknowledged > 0; }
};

/// ROLE, then (only when the master lists replicas) `INCR counter` if given and `WAIT 1
/// <timeout>` on this connection: whether the writes sent on it so far reached a replica. WAIT
/// counts only this connection's writes; the INCR makes it cover every earlier write of the
/// master too, as replication is one ordered stream. One round trip on a master without replicas
/// (nothing to wait for); throws redis_io_error when the node is not a master.
replication_status wait_replicated(redis_connection& redis, std::chrono::milliseconds timeout,
                                   const std::string& counter = {});
/// wait_replicated() once ROLE is known: `replicas` is what expect_master() returned after the
/// writes. No round trip without replicas; otherwise one (`INCR counter` and WAIT pipelined).
replication_status wait_replicated_after_role(redis_connection& redis, long long replicas,
                                              std::chrono::milliseconds timeout, const std::string& counter = {});

/// The sentinels' "+switch-master" announcements for one master (Sentinel URLs only). A
/// long-lived subscriber uses it to learn of a failover even while its old master is still up
/// and still a master in its own view (cut off from the sentinels, not from us), which a ROLE
/// check cannot see. One sentinel at a time, tried in turn (one attempt every 2 s at most
/// while none answers). Sentinel publishes "+switch-master <name> <old ip> <old port> <new ip>
/// <new port>" on every sentinel that learns of the new configuration
/// (https://redis.io/docs/management/sentinel/#pubsub-messages).
class sentinel_watch {
public:
    explicit sentinel_watch(redis_options options);
    /// Never blocks longer than a sentinel's connect and SUBSCRIBE (sentinel_timeout), never
    /// throws. The new master's address when a sentinel announced a switch of our master since
    /// the last poll; nullopt otherwise, also while no sentinel can be reached.
    std::optional<redis_endpoint> poll();
    bool connected() const noexcept { return sub_ != nullptr; }

private:
    void connect();

    redis_options options_;
    std::unique_ptr<redis_connection> sub_;
    std::chrono::steady_clock::time_point retry_at_{};
    std::size_t next_ = 0;  // the sentinel to try next
};

// ---- Typed reply readers. `what` names the command or key for the error message.

bool is_error(const redisReply* r) noexcept;
/// An error reply whose text starts with `code` ("NOSCRIPT", "BUSYGROUP").
bool is_error_code(const redisReply* r, std::string_view code) noexcept;
bool is_nil(const redisReply* r) noexcept;
std::string_view reply_type_name(const redisReply* r) noexcept;

/// Throws redis_data_error for an error reply; any other reply is fine.
void expect_ok(const redisReply* r, std::string_view what);
/// A string or status reply's text; throws redis_data_error for any other type.
std::string reply_string(const redisReply* r, std::string_view what);
/// nullopt for nil (HGET of a missing field), else as reply_string.
std::optional<std::string> reply_optional_string(const redisReply* r, std::string_view what);
/// An integer reply; throws redis_data_error for any other type.
long long reply_integer(const redisReply* r, std::string_view what);
/// An array reply's elements; throws redis_data_error for any other type, or (when given)
/// for another number of elements.
std::span<redisReply* const> reply_array(const redisReply* r, std::string_view what);
std::span<redisReply* const> reply_array(const redisReply* r, std::string_view what, std::size_t elements);
/// An array of strings (HKEYS).
std::vector<std::string> reply_strings(const redisReply* r, std::string_view what);
/// A field/value array (HGETALL) as a map.
std::map<std::string, std::string> reply_hash(const redisReply* r, std::string_view what);

/// One stream entry (XRANGE, XREADGROUP, XAUTOCLAIM).
struct stream_entry {
    std::string id;
    std::map<std::string, std::string> fields;  // empty when the entry was deleted (nil)
};
/// [id, [field, value, ...]] -> entry; nil fields (deleted meanwhile) give no fields.
stream_entry reply_stream_entry(const redisReply* r, std::string_view what);
/// An array of entries (XRANGE; XAUTOCLAIM's second element). Nil entries (deleted
/// meanwhile, Redis 6.2's XAUTOCLAIM) are skipped.
std::vector<stream_entry> reply_stream_entries(const redisReply* r, std::string_view what);

/// A pub/sub push: ["message", channel, payload]. nullopt for anything else (subscribe
/// confirmations and the like).
struct pubsub_message {
    std::string channel;
    std::string payload;
};
std::optional<pubsub_message> reply_pubsub_message(const redisReply* r);

}  // namespace devicegate
