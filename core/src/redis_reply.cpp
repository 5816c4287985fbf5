// The typed reply readers of redis.hpp: the only code that looks at hiredis's reply types.
#include "devicegate/redis.hpp"

namespace devicegate {

namespace {

std::string_view text_of(const redisReply* r) noexcept { return {r->str, r->len}; }

/// "<what>: Redis error: <text>" for an error reply, else "<what>: expected <shape>, got <type>".
[[noreturn]] void unexpected(const redisReply* r, std::string_view what, std::string_view shape) {
    if (is_error(r)) throw redis_data_error(std::string(what) + ": Redis error: " + std::string(text_of(r)));
    throw redis_data_error(std::string(what) + ": expected " + std::string(shape) + ", got " +
                           std::string(reply_type_name(r)));
}

std::span<redisReply* const> elements_of(const redisReply* r) noexcept { return {r->element, r->elements}; }

}  // namespace

bool is_error(const redisReply* r) noexcept { return r != nullptr && r->type == REDIS_REPLY_ERROR; }

bool is_error_code(const redisReply* r, std::string_view code) noexcept {
    return is_error(r) && text_of(r).substr(0, code.size()) == code;
}

bool is_nil(const redisReply* r) noexcept { return r != nullptr && r->type == REDIS_REPLY_NIL; }

std::string_view reply_type_name(const redisReply* r) noexcept {
    if (r == nullptr) return "nothing";
    switch (r->type) {
        case REDIS_REPLY_STRING: return "string";
        case REDIS_REPLY_ARRAY: return "array";
        case REDIS_REPLY_INTEGER: return "integer";
        case REDIS_REPLY_NIL: return "nil";
        case REDIS_REPLY_STATUS: return "status";
        case REDIS_REPLY_ERROR: return "error";
    }
    return "unknown";
}

void expect_ok(const redisReply* r, std::string_view what) {
    if (r == nullptr || is_error(r)) unexpected(r, what, "a reply");
}

std::string reply_string(const redisReply* r, std::string_view what) {
    if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)) return std::string(text_of(r));
    unexpected(r, what, "a string");
}

std::optional<std::string> reply_optional_string(const redisReply* r, std::string_view what) {
    if (is_nil(r)) return std::nullopt;
    return reply_string(r, what);
}

long long reply_integer(const redisReply* r, std::string_view what) {
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) return r->integer;
    unexpected(r, what, "an integer");
}

std::span<redisReply* const> reply_array(const redisReply* r, std::string_view what) {
    if (r != nullptr && r->type == REDIS_REPLY_ARRAY) return elements_of(r);
    unexpected(r, what, "an array");
}

std::span<redisReply* const> reply_array(const redisReply* r, std::string_view what, std::size_t elements) {
    auto out = reply_array(r, what);
    if (out.size() != elements) {
        throw redis_data_error(std::string(what) + ": expected " + std::to_string(elements) + " elements, got " +
                               std::to_string(out.size()));
    }
    return out;
}

std::vector<std::string> reply_strings(const redisReply* r, std::string_view what) {
    std::vector<std::string> out;
    for (const redisReply* e : reply_array(r, what)) out.push_back(reply_string(e, what));
    return out;
}

std::map<std::string, std::string> reply_hash(const redisReply* r, std::string_view what) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) unexpected(r, what, "a hash");
    auto e = elements_of(r);
    std::map<std::string, std::string> out;
    for (std::size_t i = 0; i + 1 < e.size(); i += 2) out[reply_string(e[i], what)] = reply_string(e[i + 1], what);
    return out;
}

stream_entry reply_stream_entry(const redisReply* r, std::string_view what) {
    auto e = reply_array(r, what, 2);
    stream_entry out;
    out.id = reply_string(e[0], what);
    if (!is_nil(e[1])) {
        const redisReply* fields = e[1];
        if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 != 0) unexpected(fields, what, "stream fields");
        out.fields = reply_hash(fields, what);
    }
    return out;
}

std::vector<stream_entry> reply_stream_entries(const redisReply* r, std::string_view what) {
    std::vector<stream_entry> out;
    for (const redisReply* e : reply_array(r, what)) {
        if (!is_nil(e)) out.push_back(reply_stream_entry(e, what));
    }
    return out;
}

std::optional<pubsub_message> reply_pubsub_message(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return std::nullopt;
    auto e = elements_of(r);
    for (const redisReply* part : e) {
        if (part->type != REDIS_REPLY_STRING) return std::nullopt;
    }
    if (text_of(e[0]) != "message") return std::nullopt;
    return pubsub_message{std::string(text_of(e[1])), std::string(text_of(e[2]))};
}

}  // namespace devicegate
