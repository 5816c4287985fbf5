#pragma once
// The plugin instance: mosquitto glue around the core's gate. It turns mosquitto events into
// calls on the gate and the gate's answers into mosquitto_* calls; DeviceGate's rules live in
// core/ (gate.hpp). Every method runs on the broker thread (mosquitto calls plugins only there).
// mosquitto 2.1 moved the plugin API under include/mosquitto/ and left mosquitto_broker.h and
// mosquitto_plugin.h as shims that #warning (v2.1.2 include/mosquitto_broker.h:2); its
// <mosquitto.h> includes every header, cJSON's too (include/mosquitto/libcommon_cjson.h:31), and
// mosquitto/broker_plugin.h includes <mosquitto.h> itself (:47), so a 2.1 build needs
// libcjson-dev whatever it names. See docs/design-broker-edges.md, "Mosquitto versions".
extern "C" {
#if __has_include(<mosquitto/broker.h>)
#include <mosquitto.h>
#else
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#endif
}

#include "devicegate/gate.hpp"

#include <vector>

namespace devicegate {

// Defined in plugin_main.cpp: the noexcept trampolines mosquitto calls.
extern MOSQ_FUNC_generic_callback basic_auth_callback;
extern MOSQ_FUNC_generic_callback acl_check_callback;
extern MOSQ_FUNC_generic_callback tick_callback;
extern MOSQ_FUNC_generic_callback disconnect_callback;
extern MOSQ_FUNC_generic_callback reload_callback;

class plugin {
public:
    /// Throws config_error or pki_error with an operator-facing message.
    plugin(mosquitto_plugin_id_t* id, const option_list& options);
    ~plugin();

    int on_basic_auth(mosquitto_evt_basic_auth& event);
    int on_acl_check(mosquitto_evt_acl_check& event);
    int on_tick(mosquitto_evt_tick& event);
    int on_disconnect(mosquitto_evt_disconnect& event);
    int on_reload(mosquitto_evt_reload& event);

    /// Registers every callback, then starts the gate's threads; on failure unregisters those
    /// already registered and throws.
    void register_callbacks();

private:
    mosquitto_plugin_id_t* id_;
    gate gate_;
    std::vector<int> registered_;
};

}  // namespace devicegate
