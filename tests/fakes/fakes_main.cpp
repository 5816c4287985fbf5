// devicegate-fakes: the fake ThingsBoard and fake hawkBit as one process, for the
// integration tests and the README's local stack. Runs until SIGTERM/SIGINT.
#include "devicegate/daemon.hpp"
#include "fake_backends.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

constexpr const char* usage = R"(usage: devicegate-fakes --thingsboard HOST:PORT --hawkbit HOST:PORT [options]
  --tb-user EMAIL --tb-password PW     ThingsBoard tenant login (tenant@thingsboard.org / tenant)
  --tb-token-ttl SECONDS               access token lifetime (9000)
  --tb-rule-engine stock|reply|absent  rule engine behaviour (stock = no reply node: 408
                                       after the request's timeout; "timeout" = stock)
  --tb-rule-engine-max-wait MS         stock mode waits at most MS (0 = the whole timeout, as TB)
  --tb-max-failed-logins N             lock the account after N failed logins (0 = never, stock)
  --tb-device-profile NAME             a device profile besides "default" (repeatable)
  --tb-customer TITLE                  a customer of the tenant (repeatable)
  --hb-user USER --hb-password PW      hawkBit Basic credentials (admin / admin)
  --hb-legacy-error-codes              hawkBit <= 0.6 error code spelling
  --hb-dos-filter WRITES,READS         DosFilter on for every client IP: 429 above these per second
  --hb-max-metadata N                  metadata entries per target before the 403 quota (100)
  --hb-target-type NAME                a target type that exists at start (repeatable)
Control (both): POST /_fake/faults {"fail_next":N,"status":503,"drop_next":N,"latency_ms":M,
  "fail_always":STATUS,"path":PREFIX}, DELETE /_fake/faults, GET /_fake/state, POST /_fake/reset;
  ThingsBoard also POST /_fake/expire_tokens, POST /_fake/rotate_signing_key, POST /_fake/unlock,
  GET /_fake/devices/NAME, POST /_fake/devices/NAME/delete; hawkBit also GET /_fake/targets/ID, POST /_fake/targets/ID/actions
  {"status":"pending"}, POST /_fake/dos {"max_write":N,"max_read":N}, DELETE /_fake/dos.
)";

std::pair<std::string, int> host_port(const std::string& text) {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT, got " + text);
    return {text.substr(0, colon), std::stoi(text.substr(colon + 1))};
}

void dos_limits(const std::string& text, devicegate::fakes::hawkbit_options& hb) {
    auto comma = text.find(',');
    if (comma == std::string::npos) throw std::invalid_argument("--hb-dos-filter expects WRITES,READS, got " + text);
    hb.dos_filter = true;
    hb.dos_max_write = std::stoi(text.substr(0, comma));
    hb.dos_max_read = std::stoi(text.substr(comma + 1));
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
            else if (a == "--tb-rule-engine-max-wait") tb.rule_engine_max_wait = std::chrono::milliseconds(std::stoi(value()));
            else if (a == "--tb-max-failed-logins") tb.max_failed_login_attempts = std::stoi(value());
            else if (a == "--tb-device-profile") tb.device_profiles.push_back(value());
            else if (a == "--tb-customer") tb.customers.push_back(value());
            else if (a == "--hb-user") hb.username = value();
            else if (a == "--hb-password") hb.password = value();
            else if (a == "--hb-legacy-error-codes") hb.legacy_error_codes = true;
            else if (a == "--hb-dos-filter") dos_limits(value(), hb);
            else if (a == "--hb-max-metadata") hb.max_metadata_per_target = std::stoi(value());
            else if (a == "--hb-target-type") hb.target_types.push_back(value());
            else throw std::invalid_argument("unknown option " + a);
        }
        if (tb_at.empty() || hb_at.empty()) throw std::invalid_argument("--thingsboard and --hawkbit are required");
        if (tb.rule_engine != "reply" && tb.rule_engine != "stock" && tb.rule_engine != "timeout" && tb.rule_engine != "absent") {
            throw std::invalid_argument("--tb-rule-engine takes reply, stock or absent");
        }
    } catch (const std::exception& e) {
        std::cerr << "devicegate-fakes: " << e.what() << "\n" << usage;
        return 1;
    }
    sigset_t signals = devicegate::block_stop_signals();  // the servers' threads inherit the mask

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
