// Registration throughput: N first-connect jobs injected into the stream, one devicegate-worker
// drains them against the fake ThingsBoard and hawkBit (real redis-server, real HTTP on
// loopback). Three figures side by side:
//  - stock: the fakes as ThingsBoard ships (root rule chain without a reply node) and the worker
//    as shipped (server-scope attributes, no Rule Engine message). Target: >= 300/s.
//  - fast path: a rule chain with a "rest call reply" node and thingsboard_rule_engine on.
//  - floor: the stock run's HTTP calls per device (lookup, create with credentials, attribute
//    write, hawkBit target, hawkBit target metadata) made directly by as many threads with keep-alive clients, without
//    Redis or the worker.
//   worker_bench [jobs] [rounds] [concurrency]
#include "devicegate/http.hpp"
#include "harness.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

using namespace devicegate::itest;
using nlohmann::json;

namespace {

double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

bool all_registered(const fake_backends& fakes, long long n) {
    return fakes.thingsboard_state()["devices"].get<long long>() >= n &&
           fakes.hawkbit_state()["targets"].get<long long>() >= n;
}

/// The floor: the registration's HTTP calls without the worker. Returns registrations/s.
double floor_rate(const std::vector<injected_job>& jobs, int threads) {
    fake_backends fakes;
    if (!fakes.start()) throw std::runtime_error("fakes did not start");
    devicegate::http_client login;
    auto r = login.post(fakes.thingsboard_url() + "/api/auth/login",
                        R"({"username":"tenant@thingsboard.org","password":"tenant"})", "application/json", {});
    const std::string auth = "X-Authorization: Bearer " + json::parse(r.body)["token"].get<std::string>();
    std::atomic<std::size_t> next{0};
    std::atomic<int> errors{0};
    const auto started = clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            devicegate::http_client tb, hb;
            devicegate::http_get_options o;
            o.headers = {auth, "Accept: application/json"};
            devicegate::http_get_options ho;
            ho.headers = {"Authorization: Basic YWRtaW46YWRtaW4=", "Accept: application/json"};
            for (std::size_t i = next++; i < jobs.size(); i = next++) {
                const auto& j = jobs[i];
                auto lookup = tb.get(fakes.thingsboard_url() + "/api/tenant/devices?deviceName=" + j.device_id, o);
                json body{{"device", {{"name", j.device_id}, {"type", "default"}}},
                          {"credentials", {{"credentialsType", "X509_CERTIFICATE"}, {"credentialsValue", j.certificate_pem}}}};
                auto created = tb.post(fakes.thingsboard_url() + "/api/device-with-credentials", body.dump(), "application/json", o);
                const std::string uuid = json::parse(created.body)["id"]["id"].get<std::string>();
                auto notified = tb.post(fakes.thingsboard_url() + "/api/plugins/telemetry/DEVICE/" + uuid +
                                            "/attributes/SERVER_SCOPE",
                                        R"({"devicegateEvent":"firstConnect"})", "application/json", o);
                auto target = hb.post(fakes.hawkbit_url() + "/rest/v1/targets",
                                      json::array({{{"controllerId", j.device_id}, {"name", j.device_id}}}).dump(),
                                      "application/json", ho);
                auto metadata = hb.post(fakes.hawkbit_url() + "/rest/v1/targets/" + j.device_id + "/metadata",
                                        json::array({{{"key", "devicegate.serial"}, {"value", j.device_id}},
                                                     {{"key", "devicegate.notAfter"}, {"value", "2030-01-01T00:00:00Z"}},
                                                     {{"key", "devicegate.fingerprintSha256"}, {"value", "00"}}})
                                            .dump(),
                                        "application/json", ho);
                if (lookup.status != 404 || created.status != 200 || notified.status != 200 || target.status != 201 ||
                    metadata.status != 201)
                    ++errors;
            }
        });
    }
    for (auto& t : pool) t.join();
    const double s = seconds_since(started);
    if (errors != 0 || !all_registered(fakes, static_cast<long long>(jobs.size()))) throw std::runtime_error("floor run failed");
    return static_cast<double>(jobs.size()) / s;
}

/// One devicegate-worker draining the injected jobs. Returns registrations/s.
double worker_rate(const std::vector<injected_job>& jobs, int concurrency, bool fast_path) {
    redis_server redis;
    fake_backends fakes(fast_path ? std::vector<std::string>{"--tb-rule-engine", "reply"} : std::vector<std::string>{});
    if (!redis.start() || !fakes.start()) throw std::runtime_error("redis or fakes did not start");
    std::vector<std::string> payloads;
    for (const auto& j : jobs) payloads.push_back(j.payload);
    inject(redis, payloads);
    worker_options o{.consumer_name = "bench", .concurrency = concurrency};
    o.extra = {{"log_level", "notice"}};
    if (fast_path) o.extra.emplace_back("thingsboard_rule_engine", "on");
    worker_process w(redis, fakes, o);
    const auto started = clock::now();
    if (!w.start()) throw std::runtime_error("worker did not start:\n" + w.log());
    // Done = acknowledged: the targets hold the device a moment before the worker's XACK.
    while (w.metric("devicegate_worker_jobs_done_total") < static_cast<double>(jobs.size())) {
        if (seconds_since(started) > 300) throw std::runtime_error("worker did not finish:\n" + w.log());
        std::this_thread::sleep_for(20ms);
    }
    const double s = seconds_since(started);
    if (w.metric("devicegate_worker_jobs_done_total") != static_cast<double>(jobs.size()) ||
        !all_registered(fakes, static_cast<long long>(jobs.size())) || fakes.thingsboard_state()["creates"] != jobs.size()) {
        throw std::runtime_error("worker run registered something twice or not at all");
    }
    return static_cast<double>(jobs.size()) / s;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
    const int concurrency = argc > 3 ? std::atoi(argv[3]) : 16;
    if (!std::filesystem::exists(pki(".complete"))) {
        if (std::system((std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI).c_str()) != 0) return 1;
    }
    try {
        const auto jobs = make_jobs("bench-", n);
        std::vector<double> floor, worker, fast;
        for (int r = 0; r < rounds; ++r) {  // alternate, so all see the same machine noise
            floor.push_back(floor_rate(jobs, concurrency));
            worker.push_back(worker_rate(jobs, concurrency, false));
            fast.push_back(worker_rate(jobs, concurrency, true));
            std::fprintf(stderr, "round %d: floor %.0f/s, stock %.0f/s, fast path %.0f/s\n", r + 1, floor.back(),
                         worker.back(), fast.back());
        }
        const double f = median(floor), w = median(worker), fp = median(fast);
        std::printf("## Registration worker (%d first-connect jobs, concurrency %d)\n\n", n, concurrency);
        std::printf("| run | registrations/s per round | median |\n|---|---|---|\n");
        auto row = [&](const char* name, const std::vector<double>& v, double m) {
            std::printf("| %s |", name);
            for (double x : v) std::printf(" %.0f", x);
            std::printf(" | %.0f |\n", m);
        };
        row("devicegate-worker, stock ThingsBoard (no reply node; attributes, no Rule Engine call)", worker, w);
        row("devicegate-worker, fast path (reply node; Rule Engine message on)", fast, fp);
        row("floor: the stock run's HTTP calls made directly (no Redis, no worker)", floor, f);
        std::printf("\nStock / floor: %.0f%%. Target >= 300 registrations/s in stock mode: %s (%.0f/s). A stock "
                    "registration is 5 HTTP calls (ThingsBoard lookup, create with credentials, server-scope "
                    "attributes; hawkBit target, target metadata), the fast path 6 (plus the Rule Engine message on a fresh "
                    "connection), plus XREADGROUP, HGETALL and one MULTI (HSET, XACK, XDEL) in Redis.\n",
                    100 * w / f, w >= 300 ? "met" : "NOT met", w);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "worker_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
