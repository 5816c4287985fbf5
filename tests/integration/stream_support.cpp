#include "stream_support.hpp"

#include "cert_factory.hpp"
#include "devicegate/redis.hpp"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <cstring>

namespace devicegate::itest {

std::vector<device_files> make_devices(const std::string& prefix, int count) {
    static const devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    auto dir = test_dir();
    std::vector<device_files> out;
    for (int i = 0; i < count; ++i) {
        std::string id = prefix + std::to_string(i);
        factory.issue(dir, id);
        out.push_back({id, (dir / (id + ".crt")).string(), (dir / (id + ".key")).string()});
    }
    return out;
}

std::map<std::string, std::vector<std::string>> jobs_in(const redis_server& redis) {
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    auto reply = c.command({"XRANGE", "devicegate:jobs", "-", "+"});
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& entry : devicegate::reply_stream_entries(reply.get(), "XRANGE devicegate:jobs")) {
        auto field = entry.fields.find("job");
        if (field == entry.fields.end()) continue;
        auto job = nlohmann::json::parse(field->second);
        out[job["device_id"].get<std::string>()].push_back(job["type"].get<std::string>());
    }
    return out;
}

long long scripts_run(const redis_server& redis) {
    std::string info;
    try {
        info = redis.command({"INFO", "commandstats"});
    } catch (const std::exception&) {
        return -1;
    }
    long long total = 0;
    for (const char* name : {"cmdstat_evalsha:calls=", "cmdstat_eval:calls="}) {
        const auto at = info.find(name);
        if (at != std::string::npos) total += std::atoll(info.c_str() + at + std::strlen(name));
    }
    return total;
}

long long stream_length(const redis_server& redis) {
    try {
        return redis.integer({"XLEN", "devicegate:jobs"});
    } catch (const std::exception&) {
        return -1;
    }
}

}  // namespace devicegate::itest
