#pragma once
// Private to the core's Redis layer (redis.cpp, redis_sentinel.cpp): the redis-sentinel://
// URL and the pieces of parse_url both URL forms share.
#include "devicegate/redis.hpp"

#include <string>
#include <string_view>

namespace devicegate {

inline constexpr std::string_view sentinel_url_scheme = "redis-sentinel://";
inline constexpr std::string_view sentinel_url_form =
    "redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[/db]"
    "[?sentinel_user=U&sentinel_password=P] (sentinel port 26379 by default; percent-encode @ : / ? & % "
    "in names and passwords)";

/// "6379" -> 6379; throws std::invalid_argument naming the text (never a password) and `form`.
int parse_redis_port(std::string_view text, const std::string& form);
/// "host", "host:port", "[v6 address]" or "[v6 address]:port" (`default_port` where none is
/// given); an IPv6 address needs the brackets. Throws std::invalid_argument with `form`.
redis_endpoint parse_redis_endpoint(std::string_view text, int default_port, const std::string& form);
/// "2" -> 2; throws std::invalid_argument with `form`.
int parse_redis_db(std::string_view text, const std::string& form);
/// A redis-sentinel:// URL; throws std::invalid_argument with sentinel_url_form.
redis_options parse_sentinel_url(const std::string& url);

}  // namespace devicegate
