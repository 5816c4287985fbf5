#include "job_queue.hpp"

namespace devicegate::worker {

namespace {

std::string text(const redisReply* r, std::string_view what) { return reply_string(r, what); }

/// [id, [field, value, ...]] -> entry; fields empty when the entry was deleted (nil).
stream_entry entry_from(const redisReply* r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) throw redis_data_error("stream entry: unexpected shape");
    stream_entry e;
    e.id = text(r->element[0], "stream entry id");
    const redisReply* fields = r->element[1];
    if (fields->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
            e.fields[text(fields->element[i], "stream field")] = text(fields->element[i + 1], "stream value");
        }
    } else if (fields->type != REDIS_REPLY_NIL) {
        throw redis_data_error("stream entry fields: unexpected " + std::string(reply_type_name(fields)));
    }
    return e;
}

void expect_ok(const redisReply* r, const std::string& what) {
    if (is_error(r)) throw redis_data_error(what + ": " + std::string(r->str, r->len));
}

}  // namespace

job_queue::job_queue(const redis_options& options, redis_model model, std::string group, std::string consumer)
    : redis_(options), model_(std::move(model)), group_(std::move(group)), consumer_(std::move(consumer)) {}

void job_queue::ensure_group() {
    auto r = redis_.command({"XGROUP", "CREATE", model_.jobs(), group_, "0", "MKSTREAM"});
    if (is_error(r.get()) && std::string_view(r->str, r->len).rfind("BUSYGROUP", 0) != 0) {
        expect_ok(r.get(), "XGROUP CREATE " + model_.jobs());
    }
}

std::vector<stream_entry> job_queue::read(const std::string& from, std::size_t count, std::chrono::milliseconds block) {
    std::vector<std::string> argv{"XREADGROUP", "GROUP", group_, consumer_, "COUNT", std::to_string(count)};
    if (block.count() > 0) {
        argv.push_back("BLOCK");
        argv.push_back(std::to_string(block.count()));
    }
    argv.insert(argv.end(), {"STREAMS", model_.jobs(), from});
    auto r = redis_.command(argv);
    if (r->type == REDIS_REPLY_NIL) return {};
    expect_ok(r.get(), "XREADGROUP " + model_.jobs());
    std::vector<stream_entry> out;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 || r->element[0]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->elements != 2 || r->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
        throw redis_data_error("XREADGROUP " + model_.jobs() + ": unexpected reply shape");
    }
    const redisReply* entries = r->element[0]->element[1];
    for (std::size_t i = 0; i < entries->elements; ++i) out.push_back(entry_from(entries->element[i]));
    return out;
}

std::vector<stream_entry> job_queue::own_pending(std::size_t count) { return read("0", count, {}); }

std::vector<stream_entry> job_queue::read_new(std::size_t count, std::chrono::milliseconds block) {
    return read(">", count, block);
}

std::vector<stream_entry> job_queue::claim_idle(std::chrono::milliseconds min_idle, std::size_t count) {
    auto r = redis_.command({"XAUTOCLAIM", model_.jobs(), group_, consumer_, std::to_string(min_idle.count()),
                             claim_cursor_, "COUNT", std::to_string(count)});
    expect_ok(r.get(), "XAUTOCLAIM " + model_.jobs());
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->element[1]->type != REDIS_REPLY_ARRAY) {
        throw redis_data_error("XAUTOCLAIM " + model_.jobs() + ": unexpected reply shape");
    }
    claim_cursor_ = text(r->element[0], "XAUTOCLAIM cursor");
    std::vector<stream_entry> out;
    for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
        const redisReply* e = r->element[1]->element[i];
        if (e->type == REDIS_REPLY_NIL) continue;  // deleted meanwhile (Redis 6.2)
        out.push_back(entry_from(e));
    }
    return out;
}

long long job_queue::deliveries(const std::string& id) {
    auto r = redis_.command({"XPENDING", model_.jobs(), group_, id, id, "1"});
    expect_ok(r.get(), "XPENDING " + model_.jobs());
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) return 0;
    const redisReply* row = r->element[0];
    if (row->type != REDIS_REPLY_ARRAY || row->elements != 4) throw redis_data_error("XPENDING: unexpected reply shape");
    return reply_integer(row->element[3], "XPENDING delivery count");
}

void job_queue::touch(const std::string& id) {
    auto r = redis_.command({"XCLAIM", model_.jobs(), group_, consumer_, "0", id, "JUSTID"});
    expect_ok(r.get(), "XCLAIM " + model_.jobs());
}

void job_queue::transaction(std::vector<std::vector<std::string>> commands, const std::string& device_id,
                            const std::map<std::string, std::string>& state) {
    if (!device_id.empty() && !state.empty()) {
        std::vector<std::string> hset{"HSET", model_.device(device_id)};
        for (const auto& [k, v] : state) hset.insert(hset.end(), {k, v});
        commands.push_back(std::move(hset));
    }
    std::vector<std::vector<std::string>> all{{"MULTI"}};
    all.insert(all.end(), commands.begin(), commands.end());
    all.push_back({"EXEC"});
    auto replies = redis_.pipeline(all);
    const redisReply* exec = replies.back().get();
    expect_ok(exec, "EXEC");
    if (exec->type != REDIS_REPLY_ARRAY) throw redis_data_error("EXEC: transaction aborted");
    for (std::size_t i = 0; i < exec->elements; ++i) expect_ok(exec->element[i], commands[i][0]);
}

void job_queue::done(const std::string& id, const std::string& device_id, const std::map<std::string, std::string>& state) {
    transaction({{"XACK", model_.jobs(), group_, id}, {"XDEL", model_.jobs(), id}}, device_id, state);
}

void job_queue::dead_letter(const stream_entry& e, const std::map<std::string, std::string>& info,
                            const std::string& device_id, const std::map<std::string, std::string>& state) {
    std::vector<std::string> xadd{"XADD", model_.dead_jobs(), "*", "source_id", e.id};
    for (const auto& [k, v] : e.fields) {
        if (k == "job" || k == "type") xadd.insert(xadd.end(), {k, v});
    }
    for (const auto& [k, v] : info) xadd.insert(xadd.end(), {k, v});
    transaction({xadd, {"XACK", model_.jobs(), group_, e.id}, {"XDEL", model_.jobs(), e.id}}, device_id, state);
}

void job_queue::requeue(const stream_entry& e, std::size_t attempts) {
    std::vector<std::string> xadd{"XADD", model_.jobs(), "*"};
    for (const auto& [k, v] : e.fields) {
        if (k != "attempts") xadd.insert(xadd.end(), {k, v});
    }
    xadd.insert(xadd.end(), {"attempts", std::to_string(attempts)});
    transaction({xadd, {"XACK", model_.jobs(), group_, e.id}, {"XDEL", model_.jobs(), e.id}}, "", {});
}

std::map<std::string, std::string> job_queue::device(const std::string& device_id) {
    const std::string key = model_.device(device_id);
    auto r = redis_.command({"HGETALL", key});
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        throw redis_data_error(key + ": expected a hash, got " + std::string(reply_type_name(r.get())));
    }
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i + 1 < r->elements; i += 2) out[text(r->element[i], key)] = text(r->element[i + 1], key);
    return out;
}

void job_queue::update_device(const std::string& device_id, const std::map<std::string, std::string>& fields) {
    std::vector<std::string> argv{"HSET", model_.device(device_id)};
    for (const auto& [k, v] : fields) argv.insert(argv.end(), {k, v});
    auto r = redis_.command(argv);
    expect_ok(r.get(), "HSET " + model_.device(device_id));
}

}  // namespace devicegate::worker
