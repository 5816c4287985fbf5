// Revocation to disconnect: `devicegate-ctl revoke` (run in-process, as the CLI does) returns,
// then how long until the connected device's connection closes. Real mosquitto with the
// plugin, real redis-server, real TLS clients. Side by side, the floor: the same PUBLISH
// reaching a plain Redis subscriber. Target (DESIGN.md 5): p99 <= 250 ms.
#include "bench_stats.hpp"
#include "cert_factory.hpp"
#include "ctl.hpp"
#include "devicegate/redis.hpp"
#include "harness.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <sstream>

using namespace devicegate::itest;

using devicegate::bench::ms;
using devicegate::bench::summarize;

int main(int argc, char** argv) {
    const int devices = argc > 1 ? std::atoi(argv[1]) : 200;
    if (!std::filesystem::exists(pki(".complete"))) {
        if (std::system((std::string(DEVICEGATE_MAKE_PKI) + " " + DEVICEGATE_TEST_PKI).c_str()) != 0) return 1;
    }
    int rc = 0;
    {
        redis_server redis;
        if (!redis.start()) return 1;
        broker b({.redis = &redis});
        if (!b.start() || !b.wait_for_log("redis link up")) {
            std::fprintf(stderr, "broker did not start:\n%s\n", b.log().c_str());
            return 1;
        }
        devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
        auto dir = test_dir();
        std::vector<std::unique_ptr<client>> clients;
        for (int i = 0; i < devices; ++i) {
            std::string id = "bench-" + std::to_string(i);
            factory.issue(dir, id);
            clients.push_back(std::make_unique<client>(id, (dir / (id + ".crt")).string(), (dir / (id + ".key")).string()));
            if (clients.back()->connect(b.port()) != 0) {
                std::fprintf(stderr, "%s was not admitted\n", id.c_str());
                return 1;
            }
        }

        // The floor: a plain subscriber on the same channel.
        std::atomic<bool> stop{false};
        std::mutex mutex;
        std::vector<clock::time_point> received;
        std::thread listener([&] {
            devicegate::redis_options o;
            o.port = redis.port();
            devicegate::redis_connection sub(o);
            sub.append({"SUBSCRIBE", "devicegate:revocations"});
            while (!stop) {
                auto reply = sub.next_reply(std::chrono::milliseconds(50));
                if (reply && (*reply)->type == REDIS_REPLY_ARRAY && (*reply)->elements == 3 &&
                    std::string((*reply)->element[0]->str) == "message") {
                    std::lock_guard lock(mutex);
                    received.push_back(clock::now());
                }
            }
        });
        std::this_thread::sleep_for(200ms);

        std::vector<double> kick_ms, floor_ms;
        for (int i = 0; i < devices; ++i) {
            std::ostringstream out, err;
            int code = devicegate::ctl::run({"revoke", "bench-" + std::to_string(i), "--force", "--ack-timeout", "0"}, out, err,
                                            redis.url(), "");  // returns at once: the kick is timed here
            auto returned = clock::now();
            if (code != 0) {
                std::fprintf(stderr, "revoke failed: %s\n", err.str().c_str());
                rc = 1;
                break;
            }
            if (!clients[static_cast<std::size_t>(i)]->wait_disconnected(5s)) {
                std::fprintf(stderr, "bench-%d was not disconnected within 5 s\n", i);
                rc = 1;
                break;
            }
            kick_ms.push_back(ms(clients[static_cast<std::size_t>(i)]->disconnected_at() - returned));
            {
                std::lock_guard lock(mutex);
                if (!received.empty()) floor_ms.push_back(std::max(0.0, ms(received.back() - returned)));
            }
            // Spread the revocations over the broker's tick phase, as real ones are.
            std::this_thread::sleep_for(std::chrono::milliseconds(7 * (i % 15)));
        }
        stop = true;
        listener.join();
        if (rc == 0 && !kick_ms.empty()) {
            auto k = summarize(kick_ms);
            auto f = summarize(floor_ms.empty() ? std::vector<double>{0} : floor_ms);
            std::printf("## Revocation -> disconnect (%zu revocations, %d connected devices)\n\n", kick_ms.size(), devices);
            std::printf("| path | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n");
            std::printf("| ctl revoke returned -> device connection closed | %.1f | %.1f | %.1f |\n", k.p50, k.p99, k.max);
            std::printf("| ctl revoke returned -> plain Redis subscriber got the message (floor) | %.2f | %.2f | %.2f |\n",
                        f.p50, f.p99, f.max);
            std::printf("\nTarget p99 <= 250 ms: %s (p99 %.1f ms). Most of it is the wait for the broker's next tick "
                        "(<= 100 ms in mosquitto 2.0).\n",
                        k.p99 <= 250 ? "met" : "MISSED", k.p99);
        }
        clients.clear();
    }
    end_of_test(rc != 0);
    return rc;
}
