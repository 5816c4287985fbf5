// Entry points of the DeviceGate mosquitto plugin (plugin API v5, mosquitto 2.0). Only the
// three required functions and noexcept trampolines live here; no exception may cross into
// mosquitto, and any failure in an auth path refuses (fail closed).
#include "devicegate_plugin.hpp"

#include <new>

#define DEVICEGATE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

template <class Event, int (devicegate::plugin::*Handler)(Event&), int OnError>
int trampoline(int /*event*/, void* event_data, void* userdata) noexcept {
    auto* self = static_cast<devicegate::plugin*>(userdata);
    try {
        return (self->*Handler)(*static_cast<Event*>(event_data));
    } catch (const std::exception& e) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "devicegate: internal error in callback: %s", e.what());
    } catch (...) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "devicegate: unknown internal error in callback");
    }
    return OnError;
}

}  // namespace

namespace devicegate {
MOSQ_FUNC_generic_callback basic_auth_callback =
    trampoline<mosquitto_evt_basic_auth, &plugin::on_basic_auth, MOSQ_ERR_AUTH>;
MOSQ_FUNC_generic_callback acl_check_callback =
    trampoline<mosquitto_evt_acl_check, &plugin::on_acl_check, MOSQ_ERR_ACL_DENIED>;
MOSQ_FUNC_generic_callback tick_callback = trampoline<mosquitto_evt_tick, &plugin::on_tick, MOSQ_ERR_SUCCESS>;
MOSQ_FUNC_generic_callback disconnect_callback =
    trampoline<mosquitto_evt_disconnect, &plugin::on_disconnect, MOSQ_ERR_SUCCESS>;
MOSQ_FUNC_generic_callback reload_callback = trampoline<mosquitto_evt_reload, &plugin::on_reload, MOSQ_ERR_SUCCESS>;
}  // namespace devicegate

DEVICEGATE_EXPORT int mosquitto_plugin_version(int supported_version_count, const int* supported_versions) {
    for (int i = 0; i < supported_version_count; ++i) {
        if (supported_versions[i] == 5) return 5;
    }
    return -1;
}

DEVICEGATE_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata,
                                            struct mosquitto_opt* options, int option_count) {
    devicegate::option_list opts;
    for (int i = 0; i < option_count; ++i) {
        opts.emplace_back(options[i].key ? options[i].key : "", options[i].value ? options[i].value : "");
    }
    try {
        auto self = std::make_unique<devicegate::plugin>(identifier, opts);
        self->register_callbacks();
        *userdata = self.release();
        return MOSQ_ERR_SUCCESS;
    } catch (const std::exception& e) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "devicegate: refusing to start: %s", e.what());
    }
    return MOSQ_ERR_INVAL;
}

DEVICEGATE_EXPORT int mosquitto_plugin_cleanup(void* userdata, struct mosquitto_opt*, int) {
    delete static_cast<devicegate::plugin*>(userdata);
    return MOSQ_ERR_SUCCESS;
}
