#include "devicegate/redis.hpp"
#include "redis_sentinel.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace devicegate {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

/// The error replies that mean "this node is not (or no longer) a usable master": the
/// caller must reconnect (and, with Sentinel, rediscover), not treat its data as bad.
/// READONLY: a replica refused a write (the master was demoted); LOADING: the node is loading
/// its dataset after a restart; MASTERDOWN: a replica lost its master and serves no stale data
/// (replica-serve-stale-data no). Texts from Redis's server.c shared error replies.
void throw_if_not_master(const redisReply* r, const std::string& where) {
    for (std::string_view code : {"READONLY", "LOADING", "MASTERDOWN"}) {
        if (is_error_code(r, code)) {
            throw redis_io_error("redis " + where + ": " + std::string(r->str, r->len) + " (reconnecting)");
        }
    }
}

std::vector<const char*> argv_ptrs(const std::vector<std::string>& argv, std::vector<size_t>& lens) {
    std::vector<const char*> out;
    out.reserve(argv.size());
    lens.clear();
    for (const auto& a : argv) {
        out.push_back(a.data());
        lens.push_back(a.size());
    }
    return out;
}

}  // namespace

int parse_redis_port(std::string_view text, const std::string& form) {
    int port = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc{} || end != text.data() + text.size() || port <= 0 || port > 65535) {
        throw std::invalid_argument("bad port \"" + std::string(text) + "\"; " + form);
    }
    return port;
}

redis_endpoint parse_redis_endpoint(std::string_view text, int default_port, const std::string& form) {
    redis_endpoint e{std::string(text), default_port};
    std::string_view port;
    bool has_port = false;
    if (!text.empty() && text.front() == '[') {
        const std::size_t close = text.find(']');
        const bool v6 = close != std::string_view::npos && text.substr(1, close - 1).find(':') != std::string_view::npos;
        if (!v6) {
            throw std::invalid_argument("bad IPv6 address \"" + std::string(text) + "\" (expected [address]:port); " +
                                        form);
        }
        e.host = std::string(text.substr(1, close - 1));
        const std::string_view after = text.substr(close + 1);
        if (!after.empty() && after.front() != ':') {
            throw std::invalid_argument("unexpected \"" + std::string(after) + "\" after the IPv6 address; " + form);
        }
        has_port = !after.empty();
        if (has_port) port = after.substr(1);
    } else if (const std::size_t colon = text.rfind(':'); colon != std::string_view::npos) {
        if (text.find(':') != colon) {
            throw std::invalid_argument("an IPv6 address needs brackets: [" + std::string(text) + "]; " + form);
        }
        e.host = std::string(text.substr(0, colon));
        has_port = true;
        port = text.substr(colon + 1);
    }
    if (e.host.empty()) throw std::invalid_argument("missing host; " + form);
    if (has_port) e.port = parse_redis_port(port, form);
    return e;
}

int parse_redis_db(std::string_view text, const std::string& form) {
    int db = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), db);
    if (ec != std::errc{} || end != text.data() + text.size() || db < 0) {
        throw std::invalid_argument("bad database number; " + form);
    }
    return db;
}

redis_options redis_options::parse_url(const std::string& url) {
    if (url.rfind(sentinel_url_scheme, 0) == 0) return parse_sentinel_url(url);
    const std::string form = "expected redis://[[user]:password@]host[:port][/db] or " + std::string(sentinel_url_form);
    redis_options o;
    const std::string scheme = "redis://";
    if (url.rfind(scheme, 0) != 0) throw std::invalid_argument("not a redis:// URL or a redis-sentinel:// URL; " + form);
    std::string rest = url.substr(scheme.size());
    if (auto at = rest.rfind('@'); at != std::string::npos) {
        std::string auth = rest.substr(0, at);
        rest = rest.substr(at + 1);
        if (auto colon = auth.find(':'); colon != std::string::npos) {
            o.username = auth.substr(0, colon);  // "" in redis://:password@: the default user
            auth = auth.substr(colon + 1);
        }
        o.password = auth;
    }
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) o.db = parse_redis_db(db, form);
    }
    redis_endpoint at = parse_redis_endpoint(rest, o.port, form);
    o.host = std::move(at.host);
    o.port = at.port;
    return o;
}

std::string redis_options::describe() const {
    if (!via_sentinel()) return redis_endpoint{host, port}.describe() + "/" + std::to_string(db);
    std::string out = "sentinel master '" + master_name + "' via ";
    for (std::size_t i = 0; i < sentinels.size(); ++i) out += (i ? "," : "") + sentinels[i].describe();
    return out + " db " + std::to_string(db);
}

redis_connection::redis_connection(const redis_options& options) {
    if (options.via_sentinel()) {
        discover(options);
        return;
    }
    // A plain URL names the node to write to; no ROLE round trip: a replica there answers
    // writes with READONLY, which command() turns into a reconnect (docs/redis.md).
    open({options.host, options.port}, options);
}

void redis_connection::open(const redis_endpoint& at, const redis_options& options) {
    address_ = at;
    where_ = at.describe() + "/" + std::to_string(options.db);
    command_timeout_ = options.command_timeout;
    ctx_.reset(redisConnectWithTimeout(at.host.c_str(), at.port, to_timeval(options.connect_timeout)));
    if (!ctx_) throw redis_io_error("redis " + where_ + ": cannot allocate a context");
    if (ctx_->err) throw redis_io_error(link_error());
    redisSetTimeout(ctx_.get(), to_timeval(options.command_timeout));
    // A refused AUTH or SELECT is a link that cannot be used (exit 2 in devicegate-ctl, a
    // reconnect elsewhere), not bad data in Redis.
    try {
        if (!options.password.empty()) {
            // Redis 6+ ACL users: AUTH username password (https://redis.io/commands/auth).
            auto r = options.username.empty() ? command({"AUTH", options.password})
                                              : command({"AUTH", options.username, options.password});
            expect_ok(r.get(), "redis " + where_ + ": AUTH refused (check the user and password in the URL)");
        }
        if (options.db != 0) {
            expect_ok(command({"SELECT", std::to_string(options.db)}).get(), "redis " + where_ + ": SELECT refused");
        }
    } catch (const redis_data_error& e) {
        throw redis_io_error(e.what());
    }
}

long long redis_connection::expect_master() { return expect_master(command({"ROLE"}).get()); }

long long redis_connection::expect_master(const redisReply* r) {
    // ROLE (Redis 2.8.12+): ["master", offset, [[ip, port, offset], ...]] on a master,
    // ["slave", ip, port, state, offset] on a replica, ["sentinel", [names]] on a sentinel.
    auto parts = reply_array(r, "redis " + where_ + ": ROLE");
    if (parts.empty()) throw redis_data_error("redis " + where_ + ": ROLE: empty reply");
    const std::string role = reply_string(parts[0], "redis " + where_ + ": ROLE");
    if (role != "master") throw redis_io_error(address_.describe() + " reports role " + role);
    if (parts.size() < 3) return 0;
    return static_cast<long long>(reply_array(parts[2], "redis " + where_ + ": ROLE replicas").size());
}

replication_status wait_replicated(redis_connection& redis, std::chrono::milliseconds timeout,
                                   const std::string& counter) {
    return wait_replicated_after_role(redis, redis.expect_master(), timeout, counter);
}

replication_status wait_replicated_after_role(redis_connection& redis, long long replicas,
                                              std::chrono::milliseconds timeout, const std::string& counter) {
    replication_status out;
    out.timeout = timeout;
    out.replicas = replicas;
    out.expected = out.replicas > 0 || redis.via_sentinel();
    if (out.replicas == 0) return out;  // WAIT would only sit out the timeout
    // WAIT numreplicas timeout: blocks until the writes of this connection reached that many
    // replicas or the timeout passed, and returns how many did (https://redis.io/commands/wait).
    // Redis runs a client's pipelined commands in order, so the INCR is written before WAIT
    // counts, as when they were sent one by one.
    const std::vector<std::string> wait{"WAIT", "1", std::to_string(std::max<long long>(1, timeout.count()))};
    if (counter.empty()) {
        out.acknowledged = reply_integer(redis.command(wait).get(), "WAIT");
        return out;
    }
    auto replies = redis.pipeline({{"INCR", counter}, wait});
    reply_integer(replies[0].get(), "INCR " + counter);
    out.acknowledged = reply_integer(replies[1].get(), "WAIT");
    return out;
}

std::string redis_connection::link_error() const {
    std::string cause = ctx_->err != 0 ? ctx_->errstr : "no reply";
    if (ctx_->err == REDIS_ERR_IO && (cause == std::strerror(EAGAIN) || cause == std::strerror(EWOULDBLOCK))) {
        cause = "no answer within " + std::to_string(command_timeout_.count()) +
                " ms (timed out: the server is hung, overloaded or cut off)";
    }
    return "redis " + where_ + ": " + cause;
}

redis_reply_ptr redis_connection::checked(void* reply) const {
    if (reply == nullptr) throw redis_io_error(link_error());
    redis_reply_ptr out(static_cast<redisReply*>(reply));
    throw_if_not_master(out.get(), where_);
    return out;
}

redis_reply_ptr redis_connection::command(const std::vector<std::string>& argv) {
    std::vector<size_t> lens;
    auto ptrs = argv_ptrs(argv, lens);
    return checked(redisCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data()));
}

std::vector<redis_reply_ptr> redis_connection::pipeline(const std::vector<std::vector<std::string>>& commands) {
    for (const auto& argv : commands) {
        std::vector<size_t> lens;
        auto ptrs = argv_ptrs(argv, lens);
        if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data()) != REDIS_OK) {
            throw redis_io_error(link_error());
        }
    }
    std::vector<redis_reply_ptr> replies;
    for (std::size_t i = 0; i < commands.size(); ++i) {
        void* reply = nullptr;
        if (redisGetReply(ctx_.get(), &reply) != REDIS_OK || reply == nullptr) {
            throw redis_io_error(link_error());
        }
        replies.emplace_back(static_cast<redisReply*>(reply));
    }
    for (const auto& r : replies) throw_if_not_master(r.get(), where_);
    return replies;
}

redis_reply_ptr redis_connection::transaction(const std::vector<std::vector<std::string>>& commands) {
    std::vector<std::vector<std::string>> all{{"MULTI"}};
    all.insert(all.end(), commands.begin(), commands.end());
    all.push_back({"EXEC"});
    auto replies = pipeline(all);
    redis_reply_ptr exec = std::move(replies.back());
    if (is_nil(exec.get())) throw redis_data_error("EXEC: transaction aborted");
    auto results = reply_array(exec.get(), "EXEC", commands.size());
    for (std::size_t i = 0; i < results.size(); ++i) expect_ok(results[i], commands[i][0]);
    return exec;
}

void redis_connection::append(const std::vector<std::string>& argv) {
    std::vector<size_t> lens;
    auto ptrs = argv_ptrs(argv, lens);
    if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data()) != REDIS_OK) {
        throw redis_io_error(link_error());
    }
    int done = 0;
    while (!done) {
        if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) throw redis_io_error(link_error());
    }
}

std::optional<redis_reply_ptr> redis_connection::next_reply(std::chrono::milliseconds timeout) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(ctx_.get(), &reply) != REDIS_OK) {
        throw redis_io_error(link_error());
    }
    if (reply != nullptr) return checked(reply);
    pollfd pfd{ctx_->fd, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    if (n == 0) return std::nullopt;
    if (n < 0) return std::nullopt;  // EINTR: the caller loops
    if (redisBufferRead(ctx_.get()) != REDIS_OK) throw redis_io_error(link_error());
    if (redisGetReplyFromReader(ctx_.get(), &reply) != REDIS_OK) {
        throw redis_io_error(link_error());
    }
    if (reply == nullptr) return std::nullopt;
    return checked(reply);
}

}  // namespace devicegate
