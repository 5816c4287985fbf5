// The "native + a minimal plugin" broker of bench/connect_storm: a mosquitto plugin (API v5)
// that does nothing but what every authentication plugin must: it registers the callbacks
// DeviceGate registers (basic auth, ACL check, disconnect, tick, reload), requires a client
// certificate and sets the username, and allows every ACL check. No thread. Against native
// (use_identity_as_username, no plugin) it measures what mosquitto spends on having such a
// plugin, which no plugin can avoid.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/x509.h>

namespace {

mosquitto_plugin_id_t* plugin_id = nullptr;

int basic_auth(int, void* event_data, void*) {
    auto* event = static_cast<mosquitto_evt_basic_auth*>(event_data);
    X509* cert = static_cast<X509*>(mosquitto_client_certificate(event->client));
    if (cert == nullptr) return MOSQ_ERR_AUTH;
    X509_free(cert);
    const char* id = mosquitto_client_id(event->client);
    return id != nullptr && mosquitto_set_username(event->client, id) == MOSQ_ERR_SUCCESS ? MOSQ_ERR_SUCCESS
                                                                                           : MOSQ_ERR_AUTH;
}

int allow(int, void*, void*) { return MOSQ_ERR_SUCCESS; }

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int mosquitto_plugin_version(int, const int*) { return 5; }

__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* id, void**,
                                                                 struct mosquitto_opt*, int) {
    plugin_id = id;
    const int events[] = {MOSQ_EVT_ACL_CHECK, MOSQ_EVT_DISCONNECT, MOSQ_EVT_TICK, MOSQ_EVT_RELOAD};
    if (mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, basic_auth, nullptr, nullptr) != MOSQ_ERR_SUCCESS) {
        return MOSQ_ERR_UNKNOWN;
    }
    for (int event : events) {
        if (mosquitto_callback_register(plugin_id, event, allow, nullptr, nullptr) != MOSQ_ERR_SUCCESS) {
            return MOSQ_ERR_UNKNOWN;
        }
    }
    return MOSQ_ERR_SUCCESS;
}

__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void*, struct mosquitto_opt*, int) {
    return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
