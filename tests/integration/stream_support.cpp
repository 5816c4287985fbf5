#include "stream_support.hpp"

#include "cert_factory.hpp"
#include "devicegate/redis.hpp"

#include <nlohmann/json.hpp>

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
    for (std::size_t i = 0; i < reply->elements; ++i) {
        const redisReply* fields = reply->element[i]->element[1];
        for (std::size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (std::string(fields->element[f]->str) != "job") continue;
            auto job = nlohmann::json::parse(std::string(fields->element[f + 1]->str, fields->element[f + 1]->len));
            out[job["device_id"].get<std::string>()].push_back(job["type"].get<std::string>());
        }
    }
    return out;
}

long long stream_length(const redis_server& redis) {
    try {
        return redis.integer({"XLEN", "devicegate:jobs"});
    } catch (const std::exception&) {
        return -1;
    }
}

}  // namespace devicegate::itest
