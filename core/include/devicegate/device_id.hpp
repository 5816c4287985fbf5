#pragma once
#include <cstddef>
#include <string_view>

namespace devicegate {

/// Device ids end up in MQTT topics (ACL %c), Redis keys and HTTP URLs, so they are
/// restricted to [A-Za-z0-9] followed by [A-Za-z0-9._:@-], at most max_device_id_length
/// characters. That excludes the MQTT wildcards + and #, the level separator /, NUL,
/// whitespace and control characters.
inline constexpr std::size_t max_device_id_length = 128;

bool is_safe_device_id(std::string_view id) noexcept;

}  // namespace devicegate
