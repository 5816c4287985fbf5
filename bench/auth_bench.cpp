// The broker-thread auth decision (DESIGN.md section 5: p99 <= 20 us with 1,000,000 revoked
// serials loaded), CRL load time and memory, and the decision's latency while CRLs are
// swapped in. Each decision is timed on its own so percentiles can be reported; every
// number is also given as a ratio to a baseline measured in the same run (no CRL entries).
#include "big_crl.hpp"
#include "devicegate/authorizer.hpp"
#include "devicegate/crl_watcher.hpp"
#include "devicegate/ocsp.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

using namespace devicegate;
using steady = std::chrono::steady_clock;

namespace {

std::string pki(const std::string& name) { return std::string(DEVICEGATE_TEST_PKI) + "/" + name; }

x509_ptr load_cert(const std::string& path) {
    return std::move(parse_certificates(read_file(path, max_certificate_file_bytes), path).at(0));
}

long rss_kib(const char* field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
    }
    return -1;
}

struct percentiles {
    double p50, p99, p999, max;
};
percentiles summarize(std::vector<double>& ns) {
    std::sort(ns.begin(), ns.end());
    auto at = [&](double q) { return ns[std::min(ns.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ns.size())))]; };
    return {at(0.50) / 1000, at(0.99) / 1000, at(0.999) / 1000, ns.back() / 1000};
}

std::map<std::string, percentiles> results;  // for the summary table
std::map<std::string, double> facts;

struct environment {
    std::shared_ptr<const tenant_trust> trust =
        tenant_trust::load(pki("subca-a.crt"), pki("ica.crt"), pki("root.crt"));
    verified_crl big;  // 1,000,000 random serials + dev-revoked, verified
    std::string big_file;

    static environment& get() {
        static environment e;
        return e;
    }

    environment() {
        big_file = (std::filesystem::temp_directory_path() / "devicegate-bench-1m.crl").string();
        auto revoked = load_cert(pki("devices/dev-revoked.crt"));
        auto t0 = steady::now();
        bench::write_big_crl(pki("subca-a.crt"), pki("subca-a.key"), 1'000'000, {X509_get0_serialNumber(revoked.get())},
                             big_file);
        facts["crl_generate_s"] = std::chrono::duration<double>(steady::now() - t0).count();
        facts["crl_file_mib"] = static_cast<double>(std::filesystem::file_size(big_file)) / (1 << 20);

        // Load time and memory of what the plugin's background thread does on a change.
        std::ofstream("/proc/self/clear_refs") << "5";  // reset the peak RSS (VmHWM)
        long before = rss_kib("VmRSS:");
        t0 = steady::now();
        auto crls = load_crl_file(big_file, *trust);
        auto parsed = steady::now();
        auto snapshot = std::make_shared<const crl_set>(crls, *trust, 1);
        auto built = steady::now();
        facts["crl_parse_verify_s"] = std::chrono::duration<double>(parsed - t0).count();
        facts["snapshot_build_s"] = std::chrono::duration<double>(built - parsed).count();
        facts["snapshot_entries"] = static_cast<double>(snapshot->revoked_leaves().size());
        facts["snapshot_array_mib"] =
            static_cast<double>(snapshot->revoked_leaves().size() * sizeof(serial_key)) / (1 << 20);
        facts["peak_rss_during_load_mib"] = static_cast<double>(rss_kib("VmHWM:") - before) / 1024;
        big = std::move(crls.at(0));
        facts["rss_retained_mib"] = static_cast<double>(rss_kib("VmRSS:") - before) / 1024;
    }

    std::shared_ptr<const crl_set> snapshot(bool loaded) const {
        std::vector<verified_crl> crls;
        if (loaded) crls.push_back(big);
        return std::make_shared<const crl_set>(std::move(crls), *trust, 1);
    }
};

// Times `decide` once per iteration and reports percentiles.
template <class F>
void timed(benchmark::State& state, const std::string& name, F&& decide) {
    std::vector<double> ns;
    ns.reserve(1 << 20);
    for (auto _ : state) {
        auto t0 = steady::now();
        auto d = decide();
        auto t1 = steady::now();
        benchmark::DoNotOptimize(d);
        ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    }
    auto p = summarize(ns);
    state.counters["p50_us"] = p.p50;
    state.counters["p99_us"] = p.p99;
    state.counters["p999_us"] = p.p999;
    state.counters["max_us"] = p.max;
    results[name] = p;
}

// A reconnecting device (verify cache hit): hash, lookups, revocation check.
void BM_decision_cached(benchmark::State& state) {
    auto& env = environment::get();
    const bool loaded = state.range(0) != 0;
    snapshot_slot<crl_set> slot;
    slot.store(env.snapshot(loaded));
    authorizer auth(std::make_shared<const plugin_config>(), env.trust, slot);
    auto leaf = load_cert(pki("devices/dev-001.crt"));
    const auto now = std::time(nullptr);
    if (auth.authorize(leaf.get(), "dev-001", now).why != reason::ok) state.SkipWithError("dev-001 refused");
    timed(state, loaded ? "cached, 1M revoked" : "cached, baseline (0 revoked)",
          [&] { return auth.authorize(leaf.get(), "dev-001", now).why; });
}
BENCHMARK(BM_decision_cached)->Arg(0)->Arg(1'000'000)->Iterations(300'000)->Unit(benchmark::kMicrosecond);

// The OCSP cache-hit path (DESIGN: adds <= 2 us p99): ocsp soft with a good answer cached,
// 100,000 other answers in the cache, beside the same decision without OCSP.
void BM_decision_cached_ocsp(benchmark::State& state) {
    auto& env = environment::get();
    snapshot_slot<crl_set> slot;
    slot.store(env.snapshot(true));
    plugin_config config;
    config.ocsp = ocsp_mode::soft;
    ocsp_cache cache(200'000, std::chrono::hours(1));
    auto leaf = load_cert(pki("devices/dev-001.crt"));
    const auto now = std::time(nullptr);
    for (unsigned i = 0; i < 100'000; ++i) {
        sha256_digest other{};
        std::memcpy(other.data(), &i, sizeof i);
        other[31] = 0xAA;
        cache.store(other, {ocsp_status::good, now, now + 3600}, now);
    }
    cache.store(certificate_sha256(leaf.get()), {ocsp_status::good, now, now + 3600}, now);
    authorizer auth(std::make_shared<const plugin_config>(config), env.trust, slot, nullptr, &cache);
    if (auth.authorize(leaf.get(), "dev-001", now).why != reason::ok) state.SkipWithError("dev-001 refused");
    timed(state, "cached, 1M revoked, OCSP answer cached", [&] { return auth.authorize(leaf.get(), "dev-001", now).why; });
}
BENCHMARK(BM_decision_cached_ocsp)->Iterations(300'000)->Unit(benchmark::kMicrosecond);

// A revoked device is found in the 1M array.
void BM_decision_revoked(benchmark::State& state) {
    auto& env = environment::get();
    snapshot_slot<crl_set> slot;
    slot.store(env.snapshot(true));
    authorizer auth(std::make_shared<const plugin_config>(), env.trust, slot);
    auto leaf = load_cert(pki("devices/dev-revoked.crt"));
    const auto now = std::time(nullptr);
    if (auth.authorize(leaf.get(), "dev-revoked", now).why != reason::revoked_crl) state.SkipWithError("not revoked");
    timed(state, "cached, revoked device, 1M revoked", [&] { return auth.authorize(leaf.get(), "dev-revoked", now).why; });
}
BENCHMARK(BM_decision_revoked)->Iterations(300'000)->Unit(benchmark::kMicrosecond);

// A device's first connect (or after a cache eviction): the leaf against the chain that was
// verified at load (one signature check).
void BM_decision_first_connect(benchmark::State& state) {
    auto& env = environment::get();
    snapshot_slot<crl_set> slot;
    slot.store(env.snapshot(true));
    plugin_config config;
    config.verify_cache_size = 1;  // alternating two devices: every call misses
    authorizer auth(std::make_shared<const plugin_config>(config), env.trust, slot);
    auto a = load_cert(pki("devices/dev-001.crt"));
    auto b = load_cert(pki("devices/dev-003.crt"));
    const auto now = std::time(nullptr);
    bool flip = false;
    timed(state, "first connect (leaf verify), 1M revoked", [&] {
        flip = !flip;
        return flip ? auth.authorize(a.get(), "dev-001", now).why : auth.authorize(b.get(), "dev-003", now).why;
    });
}
BENCHMARK(BM_decision_first_connect)->Iterations(20'000)->Unit(benchmark::kMicrosecond);

// tenant_trust alone, alternating two leaves: the per-device check against the chain verified
// at load (after), and X509_verify_cert over the whole chain (what every first connect cost
// before the constant chain was verified once), for the ratio.
void BM_tenant_verify(benchmark::State& state, bool full) {
    auto& env = environment::get();
    auto a = load_cert(pki("devices/dev-001.crt"));
    auto b = load_cert(pki("devices/dev-003.crt"));
    bool flip = false;
    timed(state, full ? "tenant_trust::verify_full (X509_verify_cert, before)" : "tenant_trust::verify (leaf only, after)",
          [&] {
              flip = !flip;
              X509* leaf = flip ? a.get() : b.get();
              return (full ? env.trust->verify_full(leaf) : env.trust->verify(leaf)).why;
          });
}
BENCHMARK_CAPTURE(BM_tenant_verify, leaf, false)->Iterations(20'000)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_tenant_verify, full_chain, true)->Iterations(20'000)->Unit(benchmark::kMicrosecond);

// Decisions while a background thread keeps publishing new 1M snapshots, as the CRL
// watcher does: the broker thread must never wait on a swap (target: no stall > 1 ms).
void BM_decision_during_swaps(benchmark::State& state) {
    auto& env = environment::get();
    snapshot_slot<crl_set> slot;
    slot.store(env.snapshot(true));
    authorizer auth(std::make_shared<const plugin_config>(), env.trust, slot);
    auto leaf = load_cert(pki("devices/dev-001.crt"));
    const auto now = std::time(nullptr);
    auth.authorize(leaf.get(), "dev-001", now);
    std::atomic<bool> stop{false};
    std::atomic<int> swaps{0};
    std::thread swapper([&] {
        std::shared_ptr<const crl_set> retired;
        while (!stop) {
            auto next = env.snapshot(true);
            retired = slot.load();
            slot.store(std::move(next));
            ++swaps;
        }
    });
    timed(state, "cached, 1M revoked, during swaps", [&] { return auth.authorize(leaf.get(), "dev-001", now).why; });
    stop = true;
    swapper.join();
    state.counters["swaps"] = swaps.load();
    facts["swaps_during_measurement"] = swaps.load();
}
BENCHMARK(BM_decision_during_swaps)->Iterations(1'000'000)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
    if (!std::filesystem::exists(pki(".complete"))) {
        std::string cmd = std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI;
        if (std::system(cmd.c_str()) != 0) return 1;
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();

    if (results.empty()) return 0;
    std::printf("\n## Auth decision (broker thread), per call\n\n");
    std::printf("| case | p50 us | p99 us | p99.9 us | max us | p99 / baseline p99 |\n|---|---|---|---|---|---|\n");
    const auto base = results.find("cached, baseline (0 revoked)");
    const auto no_ocsp = results.find("cached, 1M revoked");
    const auto with_ocsp = results.find("cached, 1M revoked, OCSP answer cached");
    for (const auto& [name, p] : results) {
        double ratio = base != results.end() ? p.p99 / base->second.p99 : 0;
        std::printf("| %s | %.2f | %.2f | %.2f | %.1f | %.2f |\n", name.c_str(), p.p50, p.p99, p.p999, p.max, ratio);
    }
    if (no_ocsp != results.end() && with_ocsp != results.end()) {
        std::printf("\nOCSP cache hit adds %.2f us at p99 and %.2f us at p50 (target: <= 2 us p99).\n",
                    with_ocsp->second.p99 - no_ocsp->second.p99, with_ocsp->second.p50 - no_ocsp->second.p50);
    }
    std::printf("\n## CRL with 1,000,000 serials\n\n| fact | value |\n|---|---|\n");
    for (const auto& [name, v] : facts) std::printf("| %s | %.3f |\n", name.c_str(), v);
    std::filesystem::remove(environment::get().big_file);
    return 0;
}
