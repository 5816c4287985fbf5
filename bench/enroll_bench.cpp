// Enrollment throughput and latency with the embedded CA (Sub-CA A of the test PKI, P-256
// device keys): (1) the CA alone (build + sign + durable index append), (2) the whole
// enrollment as the API runs it (JSON, CSR checks, one-time token GETDEL, WireGuard address
// script, signing, registration job script) against a real redis-server, with 1 and 4
// concurrent callers. CSRs and tokens are made before the clock starts.
//   enroll_bench [enrollments]
#include "csr_factory.hpp"
#include "embedded_ca.hpp"
#include "enroll_tokens.hpp"
#include "harness.hpp"
#include "service.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>

using namespace devicegate::itest;
namespace bridge = devicegate::bridge;

namespace {

double ms(clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void report(const char* what, std::vector<double> lat, double seconds) {
    std::sort(lat.begin(), lat.end());
    auto at = [&](double q) { return lat[std::min(lat.size() - 1, static_cast<std::size_t>(q * static_cast<double>(lat.size())))]; };
    std::printf("| %s | %zu | %.0f | %.2f | %.2f | %.2f |\n", what, lat.size(), static_cast<double>(lat.size()) / seconds, at(0.5),
                at(0.99), lat.back());
}

bridge::bridge_config config_for(const redis_server& redis, const std::filesystem::path& dir) {
    bridge::bridge_config c;
    c.redis.port = redis.port();
    c.sub_ca_file = pki("subca-a.crt");
    c.ica_file = pki("ica.crt");
    c.root_file = pki("root.crt");
    c.ca_key_file = pki("subca-a.key");
    c.state_dir = (dir / "state").string();
    c.rate_limit = 100000;
    c.threads = 8;
    c.wireguard.pool = "10.64.0.0/10";
    c.wireguard.gateway_public_key = bridge::generate_wireguard_keypair().public_key;
    c.wireguard.endpoint = "gw:51820";
    c.wireguard.allowed_ips = "10.64.0.0/10";
    return c;
}

void run_service(bridge::bridge_service& service, const redis_server& redis, int n, int callers, const char* label) {
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    std::vector<bridge::api_request> requests;
    for (int i = 0; i < n; ++i) {
        const std::string id = std::string(label) + "-" + std::to_string(i);
        auto key = devicegate::test::make_key("P-256");
        bridge::api_request r;
        r.device_id = id;
        r.body = nlohmann::json{{"csr_pem", devicegate::test::make_csr_pem(key.get(), id)}}.dump();
        r.authorization = "Bearer " + bridge::create_enroll_token(c, devicegate::redis_model{}, id, std::chrono::hours(1));
        r.source = "10.0.0." + std::to_string(i % 250);
        requests.push_back(std::move(r));
    }
    std::vector<double> lat(static_cast<std::size_t>(n));
    std::atomic<int> next{0}, failed{0};
    const auto t0 = clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < callers; ++t) {
        threads.emplace_back([&] {
            for (int i = next++; i < n; i = next++) {
                const auto s = clock::now();
                if (service.enroll(requests[static_cast<std::size_t>(i)]).status != 200) ++failed;
                lat[static_cast<std::size_t>(i)] = ms(clock::now() - s);
            }
        });
    }
    for (auto& t : threads) t.join();
    const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (failed > 0) std::fprintf(stderr, "%d enrollments failed\n", failed.load());
    report((std::string("enroll API, ") + std::to_string(callers) + " caller(s)").c_str(), lat, seconds);
}

}  // namespace

int main(int argc, char** argv) {
    const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    if (!std::filesystem::exists(pki(".complete"))) {
        if (std::system((std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI).c_str()) != 0) return 1;
    }
    int rc = 0;
    {
        redis_server redis;
        if (!redis.start()) return 1;
        const auto dir = test_dir();
        auto config = config_for(redis, dir);
        bridge::embedded_ca::options o{config.sub_ca_file, config.ca_key_file, config.state_dir, {}, std::chrono::hours(24)};
        auto ca = std::make_shared<bridge::embedded_ca>(o);
        std::printf("## Enrollment (embedded CA, P-256 device keys)\n\n");
        std::printf("| path | enrollments | per second | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n");
        std::vector<bridge::x509_req_ptr> csrs;
        for (int i = 0; i < n; ++i) {
            auto key = devicegate::test::make_key("P-256");
            csrs.push_back(bridge::check_csr(devicegate::test::make_csr_pem(key.get(), "ca-" + std::to_string(i)),
                                             "ca-" + std::to_string(i)).csr);
        }
        std::vector<double> lat;
        const auto t0 = clock::now();
        for (int i = 0; i < n; ++i) {
            const auto s = clock::now();
            ca->issue(csrs[static_cast<std::size_t>(i)].get(), "ca-" + std::to_string(i));
            lat.push_back(ms(clock::now() - s));
        }
        report("embedded CA sign + index fsync", lat, std::chrono::duration<double>(clock::now() - t0).count());
        auto trust = devicegate::tenant_trust::load(config.sub_ca_file, config.ica_file, config.root_file);
        bridge::bridge_service service(config, trust, ca, devicegate::logger{});
        run_service(service, redis, n, 1, "one");
        run_service(service, redis, n, 4, "four");
        end_of_test(false);
    }
    return rc;
}
