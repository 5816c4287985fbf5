#include "devicegate_plugin.hpp"

#include "devicegate/listener_check.hpp"

#include <ctime>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace devicegate {

namespace {

int mosquitto_level(log_level level) {
    switch (level) {
        case log_level::debug: return MOSQ_LOG_DEBUG;
        case log_level::info: return MOSQ_LOG_INFO;
        case log_level::notice: return MOSQ_LOG_NOTICE;
        case log_level::warning: return MOSQ_LOG_WARNING;
        case log_level::error: return MOSQ_LOG_ERR;
    }
    return MOSQ_LOG_ERR;
}

// The gate calls this on the broker thread only: mosquitto 2.0's logger may publish to
// $SYS/broker/log, which is not thread-safe (src/logging.c).
void broker_log(log_level level, std::string_view line) {
    mosquitto_log_printf(mosquitto_level(level), "%.*s", static_cast<int>(line.size()), line.data());
}

// mosquitto's -c argument: the plugin API does not expose the config file's path.
std::string own_config_path() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    return config_path_from_cmdline(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
}

MOSQ_FUNC_generic_callback callback_of(int event) {
    switch (event) {
        case MOSQ_EVT_BASIC_AUTH: return basic_auth_callback;
        case MOSQ_EVT_ACL_CHECK: return acl_check_callback;
        case MOSQ_EVT_TICK: return tick_callback;
        case MOSQ_EVT_DISCONNECT: return disconnect_callback;
        case MOSQ_EVT_RELOAD: return reload_callback;
        default: return nullptr;
    }
}

// mosquitto 2.0 calls every tick once per loop iteration, and its loop never sleeps longer than
// 100 ms (v2.0.11 src/mux_epoll.c:189). 2.1 sleeps until the earliest wake-up anything asked
// for (v2.1.2 src/loop.c:203, src/mux_epoll.c:167: keepalive up to 5 s, src/keepalive.c:160;
// $SYS up to sys_interval) and calls a tick only once the interval it asked for has passed; only
// a tick that runs asks for the next wake-up (src/plugin_tick.c:39-48). So: 100 ms, as under 2.0.
// After a publish, 0: mosquitto_broker_publish wakes the loop 1 ms later (src/plugin_public.c:262),
// an iteration that would skip a 100 ms tick and leave the loop asleep for seconds; with 0 it
// runs the tick, which asks for 100 ms again. Client traffic inside the 100 ms skips the tick the
// same way, and asking cannot prevent that: docs/design-broker-edges.md, "Mosquitto versions". 2.0's
// struct has no next_ms (its next_ns is never read): against 2.0 headers this is no code at all.
constexpr long next_tick_ms = 100;

template <class Tick>
void request_next_tick(Tick& event, long ms) {
    if constexpr (requires { event.next_ms; }) {
        event.next_s = 0;
        event.next_ms = ms;
    }
}

}  // namespace

plugin::plugin(mosquitto_plugin_id_t* id, const option_list& options)
    : id_(id), gate_(options, own_config_path(), broker_log) {}

plugin::~plugin() {
    for (int event : registered_) mosquitto_callback_unregister(id_, event, callback_of(event), nullptr);
    gate_.stop();
}

void plugin::register_callbacks() {
    for (int event : {MOSQ_EVT_BASIC_AUTH, MOSQ_EVT_ACL_CHECK, MOSQ_EVT_TICK, MOSQ_EVT_DISCONNECT, MOSQ_EVT_RELOAD}) {
        int rc = mosquitto_callback_register(id_, event, callback_of(event), nullptr, this);
        if (rc != MOSQ_ERR_SUCCESS) {
            throw std::runtime_error("mosquitto_callback_register(" + std::to_string(event) +
                                     ") failed: " + mosquitto_strerror(rc));
        }
        registered_.push_back(event);
    }
    gate_.start();
}

int plugin::on_basic_auth(mosquitto_evt_basic_auth& event) {
    struct mosquitto* client = event.client;
    const char* client_id = mosquitto_client_id(client);
    x509_ptr leaf(static_cast<X509*>(mosquitto_client_certificate(client)));
    if (gate_.keeps_offline_session(leaf.get())) return MOSQ_ERR_SUCCESS;  // SIGHUP: see gate.hpp
    admission a = gate_.admit(leaf.get(), client_id != nullptr ? client_id : "", std::time(nullptr));
    if (a.admitted()) {
        int rc = mosquitto_set_username(client, a.verdict.device_id.c_str());
        if (rc != MOSQ_ERR_SUCCESS) {
            a.refuse(reason::internal_error, std::string("mosquitto_set_username failed: ") + mosquitto_strerror(rc));
        }
    }
    gate_.settle(client, leaf.get(), a, client_id, mosquitto_client_address(client));
    return a.admitted() ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
}

int plugin::on_acl_check(mosquitto_evt_acl_check& event) {
    if (event.access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
    const acl_action action = event.access == MOSQ_ACL_WRITE       ? acl_action::publish
                              : event.access == MOSQ_ACL_SUBSCRIBE ? acl_action::subscribe
                                                                   : acl_action::receive;
    reason why = gate_.check_acl(event.client, mosquitto_client_id(event.client), event.topic, action);
    return why == reason::ok ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

int plugin::on_tick(mosquitto_evt_tick& event) {
    request_next_tick(event, next_tick_ms);  // first: a throw below must not leave 2.1's loop asleep
    tick_work work = gate_.tick(std::chrono::steady_clock::now());
    for (const auto& k : work.kicks) mosquitto_kick_client_by_clientid(k.client_id.c_str(), false);
    if (!work.stats.empty()) request_next_tick(event, 0);
    for (const auto& [topic, value] : work.stats) {
        mosquitto_broker_publish_copy(nullptr, topic.c_str(), static_cast<int>(value.size()), value.data(), 0, true,
                                      nullptr);
    }
    return MOSQ_ERR_SUCCESS;
}

int plugin::on_disconnect(mosquitto_evt_disconnect& event) {
    // A session may outlive its connection unless it is MQTT 3.1(.1) with clean session
    // (a v5 session's expiry interval is not exposed to plugins in 2.0.11).
    const bool persists = mosquitto_client_protocol_version(event.client) == 5 ||
                          !mosquitto_client_clean_session(event.client);
    gate_.disconnected(event.client, mosquitto_client_id(event.client), persists);
    return MOSQ_ERR_SUCCESS;
}

int plugin::on_reload(mosquitto_evt_reload&) {
    gate_.reload();
    return MOSQ_ERR_SUCCESS;
}

}  // namespace devicegate
