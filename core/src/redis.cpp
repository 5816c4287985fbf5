#include "devicegate/redis.hpp"

#include <poll.h>

#include <charconv>

namespace devicegate {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
    return tv;
}

redis_reply_ptr checked(redisContext* c, void* reply, const std::string& where) {
    if (reply == nullptr) {
        throw redis_io_error("redis " + where + ": " + (c->err ? c->errstr : "no reply"));
    }
    return redis_reply_ptr(static_cast<redisReply*>(reply));
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

redis_options redis_options::parse_url(const std::string& url) {
    const std::string form = "expected redis://[:password@]host[:port][/db]";
    redis_options o;
    const std::string scheme = "redis://";
    if (url.rfind(scheme, 0) != 0) throw std::invalid_argument("not a redis:// URL; " + form);
    std::string rest = url.substr(scheme.size());
    if (auto at = rest.rfind('@'); at != std::string::npos) {
        std::string auth = rest.substr(0, at);
        rest = rest.substr(at + 1);
        if (auto colon = auth.find(':'); colon != std::string::npos) auth = auth.substr(colon + 1);
        o.password = auth;
    }
    if (auto slash = rest.find('/'); slash != std::string::npos) {
        std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) {
            auto [end, ec] = std::from_chars(db.data(), db.data() + db.size(), o.db);
            if (ec != std::errc{} || end != db.data() + db.size() || o.db < 0) {
                throw std::invalid_argument("bad database number; " + form);
            }
        }
    }
    if (auto colon = rest.rfind(':'); colon != std::string::npos) {
        std::string port = rest.substr(colon + 1);
        rest = rest.substr(0, colon);
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), o.port);
        if (ec != std::errc{} || end != port.data() + port.size() || o.port <= 0 || o.port > 65535) {
            throw std::invalid_argument("bad port; " + form);
        }
    }
    if (rest.empty()) throw std::invalid_argument("missing host; " + form);
    o.host = rest;
    return o;
}

std::string redis_options::describe() const { return host + ":" + std::to_string(port) + "/" + std::to_string(db); }

redis_connection::redis_connection(const redis_options& options) : where_(options.describe()) {
    ctx_.reset(redisConnectWithTimeout(options.host.c_str(), options.port, to_timeval(options.connect_timeout)));
    if (!ctx_) throw redis_io_error("redis " + where_ + ": cannot allocate a context");
    if (ctx_->err) throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
    redisSetTimeout(ctx_.get(), to_timeval(options.command_timeout));
    if (!options.password.empty()) {
        expect_ok(command({"AUTH", options.password}).get(), "redis " + where_ + ": AUTH refused");
    }
    if (options.db != 0) {
        expect_ok(command({"SELECT", std::to_string(options.db)}).get(), "redis " + where_ + ": SELECT refused");
    }
}

redis_reply_ptr redis_connection::command(const std::vector<std::string>& argv) {
    std::vector<size_t> lens;
    auto ptrs = argv_ptrs(argv, lens);
    return checked(ctx_.get(), redisCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data()),
                   where_);
}

std::vector<redis_reply_ptr> redis_connection::pipeline(const std::vector<std::vector<std::string>>& commands) {
    for (const auto& argv : commands) {
        std::vector<size_t> lens;
        auto ptrs = argv_ptrs(argv, lens);
        if (redisAppendCommandArgv(ctx_.get(), static_cast<int>(ptrs.size()), ptrs.data(), lens.data()) != REDIS_OK) {
            throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
        }
    }
    std::vector<redis_reply_ptr> replies;
    for (std::size_t i = 0; i < commands.size(); ++i) {
        void* reply = nullptr;
        if (redisGetReply(ctx_.get(), &reply) != REDIS_OK || reply == nullptr) {
            throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
        }
        replies.emplace_back(static_cast<redisReply*>(reply));
    }
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
        throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
    }
    int done = 0;
    while (!done) {
        if (redisBufferWrite(ctx_.get(), &done) != REDIS_OK) throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
    }
}

std::optional<redis_reply_ptr> redis_connection::next_reply(std::chrono::milliseconds timeout) {
    void* reply = nullptr;
    if (redisGetReplyFromReader(ctx_.get(), &reply) != REDIS_OK) {
        throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
    }
    if (reply != nullptr) return redis_reply_ptr(static_cast<redisReply*>(reply));
    pollfd pfd{ctx_->fd, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    if (n == 0) return std::nullopt;
    if (n < 0) return std::nullopt;  // EINTR: the caller loops
    if (redisBufferRead(ctx_.get()) != REDIS_OK) throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
    if (redisGetReplyFromReader(ctx_.get(), &reply) != REDIS_OK) {
        throw redis_io_error("redis " + where_ + ": " + ctx_->errstr);
    }
    if (reply == nullptr) return std::nullopt;
    return redis_reply_ptr(static_cast<redisReply*>(reply));
}

}  // namespace devicegate
