#pragma once
// The in-process fake ThingsBoard and hawkBit, and the worker's clients logged in to them (one
// curl handle each: a thread of its own makes its own clients from the settings and session).
#include "fake_backends.hpp"
#include "hawkbit_client.hpp"
#include "thingsboard_client.hpp"

#include <chrono>
#include <memory>

namespace devicegate::test {

struct fake_backend_clients {
    fakes::fake_thingsboard tb;
    fakes::fake_hawkbit hb;
    worker::thingsboard_settings tb_settings;
    worker::hawkbit_settings hb_settings;
    worker::worker_metrics metrics;
    worker::login_gate tb_gate{worker::target::thingsboard, std::chrono::seconds(1), std::chrono::seconds(1), metrics};
    worker::login_gate hb_gate{worker::target::hawkbit, std::chrono::seconds(1), std::chrono::seconds(1), metrics};
    worker::setup_lookup tb_setup{worker::target::thingsboard, std::chrono::seconds(1), std::chrono::seconds(1), metrics};
    worker::setup_lookup hb_setup{worker::target::hawkbit, std::chrono::seconds(1), std::chrono::seconds(1), metrics};
    std::unique_ptr<worker::thingsboard_session> session;
    std::unique_ptr<worker::thingsboard_client> thingsboard;
    std::unique_ptr<worker::hawkbit_client> hawkbit;

    fake_backend_clients() {
        tb.start("127.0.0.1", 0);
        hb.start("127.0.0.1", 0);
        tb_settings = {tb.url(), "tenant@thingsboard.org", "tenant"};
        hb_settings = {hb.url(), "admin", "admin"};
        const auto timeout = std::chrono::seconds(5);
        session = std::make_unique<worker::thingsboard_session>(tb_settings, timeout, metrics, tb_gate);
        thingsboard = std::make_unique<worker::thingsboard_client>(tb_settings, timeout, *session, metrics, tb_setup);
        hawkbit = std::make_unique<worker::hawkbit_client>(hb_settings, timeout, metrics, hb_gate, hb_setup);
    }
};

}  // namespace devicegate::test
