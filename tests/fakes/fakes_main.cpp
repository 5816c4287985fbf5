// devicegate-fakes: the fake ThingsBoard and fake hawkBit as one process, for the
// integration tests and the README's local stack. Runs until SIGTERM/SIGINT.
#include "fake_backends.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

constexpr const char* usage = R"(usage: devicegate-fakes --thingsboard HOST:PORT --hawkbit HOST:PORT [options]
  --tb-user EMAIL --tb-password PW     ThingsBoard tenant login (tenant@thingsboard.org / tenant)
  --tb-token-ttl SECONDS               access token lifetime (9000)
  --tb-rule-engine reply|timeout|absent  rule engine behaviour (reply)
  --hb-user USER --hb-password PW      hawkBit Basic credentials (admin / admin)
  --hb-legacy-error-codes              hawkBit <= 0.6 error code spelling
Control (both): POST /_fake/faults {"fail_next":N,"status":503,"drop_next":N,"latency_ms":M,
  "fail_always":STATUS,"path":PREFIX}, DELETE /_fake/faults, GET /_fake/state, POST /_fake/reset;
  ThingsBoard also POST /_fake/expire_tokens, GET /_fake/devices/NAME.
)";

std::pair<std::string, int> host_port(const std::string& text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT, got " + text);
    return {text.substr(0, colon), std::stoi(text.substr(colon + 1))};
}

}  // namespace

int main(int argc, char** argv) {
    using namespace devicegate::fakes;
    thingsboard_options tb;
    hawkbit_options hb;
    std::string tb_at, hb_at;
    try {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            auto value = [&] {
                if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
                return std::string(argv[++i]);
            };
            if (a == "--thingsboard") tb_at = value();
            else if (a == "--hawkbit") hb_at = value();
            else if (a == "--tb-user") tb.username = value();
            else if (a == "--tb-password") tb.password = value();
            else if (a == "--tb-token-ttl") tb.access_ttl = std::chrono::seconds(std::stoi(value()));
            else if (a == "--tb-rule-engine") tb.rule_engine = value();
            else if (a == "--hb-user") hb.username = value();
            else if (a == "--hb-password") hb.password = value();
            else if (a == "--hb-legacy-error-codes") hb.legacy_error_codes = true;
            else throw std::invalid_argument("unknown option " + a);
        }
        if (tb_at.empty() || hb_at.empty()) throw std::invalid_argument("--thingsboard and --hawkbit are required");
        if (tb.rule_engine != "reply" && tb.rule_engine != "timeout" && tb.rule_engine != "absent") {
            throw std::invalid_argument("--tb-rule-engine takes reply, timeout or absent");
        }
    } catch (const std::exception& e) {
        std::cerr << "devicegate-fakes: " << e.what() << "\n" << usage;
        return 1;
    }
    // A shell starts background jobs with SIGINT ignored, and an ignored signal never reaches
    // sigwait: take the default disposition back first.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // the servers' threads inherit the mask

    fake_thingsboard thingsboard(tb);
    fake_hawkbit hawkbit(hb);
    try {
        auto [tb_host, tb_port] = host_port(tb_at);
        auto [hb_host, hb_port] = host_port(hb_at);
        thingsboard.start(tb_host, tb_port);
        hawkbit.start(hb_host, hb_port);
        std::cout << "devicegate-fakes: fake ThingsBoard on http://" << tb_host << ":" << thingsboard.port()
                  << ", fake hawkBit on http://" << hb_host << ":" << hawkbit.port() << std::endl;
    } catch (const std::exception& e) {
        std::cerr << "devicegate-fakes: " << e.what() << "\n";
        return 1;
    }
    int sig = 0;
    sigwait(&signals, &sig);
    thingsboard.stop();
    hawkbit.stop();
    return 0;
}
