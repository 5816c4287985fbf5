// Redis Sentinel for hiredis 0.14, which has none: the redis-sentinel:// URL and master
// discovery, following the Sentinel client guidelines (https://redis.io/docs/reference/
// sentinel-clients/): ask the sentinels in order with `SENTINEL get-master-addr-by-name`,
// connect to the address the first one that knows the master gives, and check with ROLE that
// it is the master (a sentinel may still name a demoted master for a moment after a
// failover). Never write to a replica.
#include "redis_sentinel.hpp"

#include <algorithm>

namespace devicegate {

namespace {

const std::string& form() {
    static const std::string text = "expected " + std::string(sentinel_url_form);
    return text;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// RFC 3986 percent-decoding; `what` names the part (never its text: it may be a password).
std::string percent_decoded(std::string_view text, std::string_view what) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        const int hi = i + 1 < text.size() ? hex_digit(text[i + 1]) : -1;
        const int lo = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
        if (hi < 0 || lo < 0) throw std::invalid_argument("bad percent-encoding in the " + std::string(what) + "; " + form());
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

/// "h1:p1,h2,[v6]:p3" -> endpoints (26379 where no port is given).
std::vector<redis_endpoint> parse_sentinels(std::string_view list) {
    std::vector<redis_endpoint> out;
    for (std::size_t from = 0;;) {
        const std::size_t comma = std::min(list.find(',', from), list.size());
        std::string_view item = list.substr(from, comma - from);
        if (item.empty()) throw std::invalid_argument("missing sentinel host in \"" + std::string(list) + "\"; " + form());
        out.push_back(parse_redis_endpoint(item, 26379, form()));
        if (comma == list.size()) return out;
        from = comma + 1;
    }
}

/// "sentinel_user=U&sentinel_password=P" into `o`; unknown or repeated keys are refused.
void parse_query(std::string_view query, redis_options& o) {
    bool user = false, password = false;
    for (std::size_t from = 0; from <= query.size();) {
        const std::size_t amp = std::min(query.find('&', from), query.size());
        std::string_view item = query.substr(from, amp - from);
        const std::size_t eq = item.find('=');
        const std::string_view key = item.substr(0, eq);
        const std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
        if (key == "sentinel_user" && !user) {
            o.sentinel_username = percent_decoded(value, "sentinel_user");
            user = true;
        } else if (key == "sentinel_password" && !password) {
            o.sentinel_password = percent_decoded(value, "sentinel_password");
            password = true;
        } else if (key == "sentinel_user" || key == "sentinel_password") {
            throw std::invalid_argument(std::string(key) + " given twice; " + form());
        } else {
            // Not named: an unencoded & splits a password, and its tail would look like a key.
            throw std::invalid_argument("unknown parameter (only sentinel_user and sentinel_password are known; "
                                        "percent-encode & in passwords as %26); " + form());
        }
        from = amp + 1;
    }
    if (!o.sentinel_username.empty() && o.sentinel_password.empty()) {
        throw std::invalid_argument("sentinel_user needs sentinel_password; " + form());
    }
}

std::string where_of(const redis_endpoint& sentinel) { return "sentinel " + sentinel.describe(); }

}  // namespace

redis_options parse_sentinel_url(const std::string& url) {
    redis_options o;
    o.host.clear();
    o.port = 0;
    std::string_view rest = std::string_view(url).substr(sentinel_url_scheme.size());
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        parse_query(rest.substr(q + 1), o);
        rest = rest.substr(0, q);
    }
    if (auto at = rest.find('@'); at != std::string_view::npos) {
        std::string_view auth = rest.substr(0, at);
        rest = rest.substr(at + 1);
        if (auto colon = auth.find(':'); colon != std::string_view::npos) {
            o.username = percent_decoded(auth.substr(0, colon), "user name");
            auth = auth.substr(colon + 1);
        }
        o.password = percent_decoded(auth, "password");
    }
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) throw std::invalid_argument("missing /master_name; " + form());
    if (slash == 0) throw std::invalid_argument("missing sentinel host:port; " + form());
    o.sentinels = parse_sentinels(rest.substr(0, slash));
    std::string_view path = rest.substr(slash + 1);
    if (auto db = path.find('/'); db != std::string_view::npos) {
        if (db + 1 < path.size()) o.db = parse_redis_db(path.substr(db + 1), form());
        path = path.substr(0, db);
    }
    o.master_name = percent_decoded(path, "master name");
    if (o.master_name.empty()) throw std::invalid_argument("missing master name; " + form());
    return o;
}

namespace {

/// Plain options for one sentinel: its address, the sentinel credentials, the short timeout.
redis_options sentinel_node(const redis_endpoint& sentinel, const redis_options& o) {
    redis_options so;
    so.host = sentinel.host;
    so.port = sentinel.port;
    so.username = o.sentinel_username;
    so.password = o.sentinel_password;
    so.connect_timeout = so.command_timeout = o.sentinel_timeout;
    return so;
}

/// The master's address as `sentinel` knows it; nullopt if it does not know the name.
/// Throws redis_io_error / redis_data_error naming the sentinel.
std::optional<redis_endpoint> ask_sentinel(const redis_endpoint& sentinel, const redis_options& o) {
    redis_connection c(sentinel_node(sentinel, o));
    auto r = c.command({"SENTINEL", "get-master-addr-by-name", o.master_name});
    if (is_nil(r.get())) return std::nullopt;
    const std::string what = where_of(sentinel) + ": SENTINEL get-master-addr-by-name";
    auto addr = reply_array(r.get(), what, 2);
    return redis_endpoint{reply_string(addr[0], what), parse_redis_port(reply_string(addr[1], what), what)};
}

}  // namespace

void redis_connection::discover(const redis_options& o) {
    via_sentinel_ = true;
    std::vector<std::string> causes;
    std::vector<redis_endpoint> tried;
    for (const auto& sentinel : o.sentinels) {
        std::optional<redis_endpoint> master;
        try {
            master = ask_sentinel(sentinel, o);
        } catch (const std::exception& e) {  // unreachable, NOAUTH, not a sentinel: the next one
            std::string text = e.what();
            if (text.rfind("redis ", 0) == 0 && text.find(": ") != std::string::npos) text = where_of(sentinel) + text.substr(text.find(": "));
            causes.push_back(std::move(text));
            continue;
        }
        if (!master) {
            causes.push_back(where_of(sentinel) + ": master '" + o.master_name + "' unknown");
            continue;
        }
        if (std::find(tried.begin(), tried.end(), *master) != tried.end()) continue;  // said already
        tried.push_back(*master);
        try {
            open(*master, o);
            expect_master();
            where_ += " (master '" + o.master_name + "' from " + where_of(sentinel) + ")";
            return;
        } catch (const std::exception& e) {
            ctx_.reset();
            causes.push_back(e.what());
        }
    }
    std::string text = "no usable master '" + o.master_name + "' from the sentinels: ";
    for (std::size_t i = 0; i < causes.size(); ++i) text += (i ? "; " : "") + causes[i];
    throw redis_io_error(text);
}

sentinel_watch::sentinel_watch(redis_options options) : options_(std::move(options)) {}

void sentinel_watch::connect() {
    // One sentinel per attempt, in turn, and a pause after a failure: an unreachable sentinel
    // costs the caller's loop at most one sentinel_timeout every few seconds.
    const redis_endpoint& sentinel = options_.sentinels[next_ % options_.sentinels.size()];
    try {
        auto c = std::make_unique<redis_connection>(sentinel_node(sentinel, options_));
        c->append({"SUBSCRIBE", "+switch-master"});
        // The confirmation: from here on no announcement is missed.
        if (c->next_reply(options_.sentinel_timeout)) {
            sub_ = std::move(c);
            return;
        }
    } catch (const std::exception&) {  // unreachable or refusing: the next one, later
    }
    ++next_;
    retry_at_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
}

std::optional<redis_endpoint> sentinel_watch::poll() {
    if (options_.sentinels.empty()) return std::nullopt;  // a plain URL: nobody to listen to
    if (!sub_ && std::chrono::steady_clock::now() >= retry_at_) connect();
    if (!sub_) return std::nullopt;
    std::optional<redis_endpoint> out;
    try {
        while (auto reply = sub_->next_reply(std::chrono::milliseconds(0))) {
            auto m = reply_pubsub_message(reply->get());
            if (!m || m->channel != "+switch-master") continue;
            // "<name> <old ip> <old port> <new ip> <new port>"
            std::vector<std::string> words;
            for (std::size_t from = 0; from <= m->payload.size();) {
                const std::size_t space = std::min(m->payload.find(' ', from), m->payload.size());
                words.push_back(m->payload.substr(from, space - from));
                from = space + 1;
            }
            if (words.size() != 5 || words[0] != options_.master_name) continue;
            try {
                out = redis_endpoint{words[3], parse_redis_port(words[4], "+switch-master")};
            } catch (const std::invalid_argument&) {  // not what Sentinel sends: ignored
            }
        }
    } catch (const std::exception&) {
        sub_.reset();  // the sentinel went away: another one at the next poll
    }
    return out;
}

}  // namespace devicegate
