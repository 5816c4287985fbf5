#include "job_queue.hpp"

namespace devicegate::worker {

job_queue::job_queue(const redis_options& options, redis_model model, std::string group, std::string consumer)
    : redis_(options), model_(std::move(model)), group_(std::move(group)), consumer_(std::move(consumer)) {}

void job_queue::ensure_group() {
    auto r = redis_.command({"XGROUP", "CREATE", model_.jobs(), group_, "0", "MKSTREAM"});
    if (!is_error_code(r.get(), "BUSYGROUP")) expect_ok(r.get(), "XGROUP CREATE " + model_.jobs());
}

std::vector<stream_entry> job_queue::read(const std::string& from, std::size_t count, std::chrono::milliseconds block) {
    std::vector<std::string> argv{"XREADGROUP", "GROUP", group_, consumer_, "COUNT", std::to_string(count)};
    if (block.count() > 0) {
        argv.push_back("BLOCK");
        argv.push_back(std::to_string(block.count()));
    }
    argv.insert(argv.end(), {"STREAMS", model_.jobs(), from});
    auto r = redis_.command(argv);
    if (is_nil(r.get())) return {};  // BLOCK timed out
    const std::string what = "XREADGROUP " + model_.jobs();
    auto streams = reply_array(r.get(), what, 1);     // [[key, entries]]
    auto stream = reply_array(streams[0], what, 2);  // [key, entries]
    return reply_stream_entries(stream[1], what);
}

std::vector<stream_entry> job_queue::own_pending(std::size_t count) { return read("0", count, {}); }

std::vector<stream_entry> job_queue::read_new(std::size_t count, std::chrono::milliseconds block) {
    return read(">", count, block);
}

std::vector<stream_entry> job_queue::claim_idle(std::chrono::milliseconds min_idle, std::size_t count) {
    auto r = redis_.command({"XAUTOCLAIM", model_.jobs(), group_, consumer_, std::to_string(min_idle.count()),
                             claim_cursor_, "COUNT", std::to_string(count)});
    const std::string what = "XAUTOCLAIM " + model_.jobs();
    auto reply = reply_array(r.get(), what);  // [cursor, entries] (Redis 7: [cursor, entries, deleted ids])
    if (reply.size() < 2) throw redis_data_error(what + ": unexpected reply shape");
    auto entries = reply_stream_entries(reply[1], what);
    claim_cursor_ = reply_string(reply[0], what + " cursor");
    return entries;
}

long long job_queue::deliveries(const std::string& id) {
    const std::string what = "XPENDING " + model_.jobs();
    auto r = redis_.command({"XPENDING", model_.jobs(), group_, id, id, "1"});
    auto rows = reply_array(r.get(), what);
    if (rows.empty()) return 0;
    auto row = reply_array(rows[0], what, 4);  // [id, consumer, idle ms, deliveries]
    return reply_integer(row[3], "XPENDING delivery count");
}

void job_queue::touch(const std::string& id) {
    expect_ok(redis_.command({"XCLAIM", model_.jobs(), group_, consumer_, "0", id, "JUSTID"}).get(),
              "XCLAIM " + model_.jobs());
}

redis_reply_ptr job_queue::transaction(std::vector<std::vector<std::string>> commands, const std::string& device_id,
                            const std::map<std::string, std::string>& state) {
    if (!device_id.empty() && !state.empty()) {
        std::vector<std::string> hset{"HSET", model_.device(device_id)};
        for (const auto& [k, v] : state) hset.insert(hset.end(), {k, v});
        commands.push_back(std::move(hset));
    }
    return redis_.transaction(commands);
}

void job_queue::done(const std::string& id, const std::string& device_id, const std::map<std::string, std::string>& state) {
    transaction({{"XACK", model_.jobs(), group_, id}, {"XDEL", model_.jobs(), id}}, device_id, state);
}

std::string job_queue::dead_letter(const stream_entry& e, const std::map<std::string, std::string>& info,
                            const std::string& device_id, const std::map<std::string, std::string>& state) {
    std::vector<std::string> xadd{"XADD", model_.dead_jobs()};
    if (dead_letter_max_ > 0) xadd.insert(xadd.end(), {"MAXLEN", "~", std::to_string(dead_letter_max_)});
    xadd.insert(xadd.end(), {"*", job_field::source_id, e.id});
    for (const auto& [k, v] : e.fields) {
        if (k == job_field::job || k == job_field::type) xadd.insert(xadd.end(), {k, v});
    }
    for (const auto& [k, v] : info) xadd.insert(xadd.end(), {k, v});
    auto exec = transaction({xadd, {"XACK", model_.jobs(), group_, e.id}, {"XDEL", model_.jobs(), e.id}}, device_id, state);
    return reply_string(exec->element[0], "XADD " + model_.dead_jobs());  // EXEC checked the count
}

void job_queue::requeue(const stream_entry& e, std::size_t attempts) {
    std::vector<std::string> xadd{"XADD", model_.jobs(), "*"};
    for (const auto& [k, v] : e.fields) {
        if (k != job_field::attempts) xadd.insert(xadd.end(), {k, v});
    }
    xadd.insert(xadd.end(), {job_field::attempts, std::to_string(attempts)});
    transaction({xadd, {"XACK", model_.jobs(), group_, e.id}, {"XDEL", model_.jobs(), e.id}}, "", {});
}

std::map<std::string, std::string> job_queue::device(const std::string& device_id) {
    const std::string key = model_.device(device_id);
    return reply_hash(redis_.command({"HGETALL", key}).get(), key);
}

bool job_queue::revoked(const std::string& device_id, const std::string& serial_hex) {
    auto by_id = redis_.command({"HEXISTS", model_.revoked_devices(), device_id});
    if (reply_integer(by_id.get(), "HEXISTS") != 0) return true;
    if (serial_hex.empty()) return false;
    auto by_serial = redis_.command({"HEXISTS", model_.revoked_serials(), serial_hex});
    return reply_integer(by_serial.get(), "HEXISTS") != 0;
}

void job_queue::update_device(const std::string& device_id, const std::map<std::string, std::string>& fields) {
    std::vector<std::string> argv{"HSET", model_.device(device_id)};
    for (const auto& [k, v] : fields) argv.insert(argv.end(), {k, v});
    expect_ok(redis_.command(argv).get(), "HSET " + model_.device(device_id));
}

}  // namespace devicegate::worker
