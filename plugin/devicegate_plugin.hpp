#pragma once
// The plugin instance: mosquitto glue around the core's gate. It turns mosquitto events into
// calls on the gate and the gate's answers into mosquitto_* calls; DeviceGate's rules live in
// core/ (gate.hpp). Every method runs on the broker thread (mosquitto calls plugins only there).
extern "C" {
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
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
