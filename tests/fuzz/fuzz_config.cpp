// libFuzzer target: plugin options as mosquitto hands them over ("<key> <value>" lines).
#include "devicegate/config.hpp"

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

using namespace devicegate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    option_list options;
    std::string line;
    while (std::getline(in, line)) {
        auto space = line.find(' ');
        if (space == std::string::npos) options.emplace_back(line, "");
        else options.emplace_back(line.substr(0, space), line.substr(space + 1));
    }
    try {
        auto config = parse_plugin_config(options);
        acl_policy acl(config.acl_rules);
        (void)acl.allows("dev-1", "devices/dev-1/x", topic_access::read);
    } catch (const config_error&) {
    }
    return 0;
}
