#include "devicegate_plugin.hpp"

#include "devicegate/listener_check.hpp"

#include <ctime>
#include <fstream>
#include <iterator>

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

std::string or_dash(const char* s) { return s != nullptr && *s != '\0' ? log_safe(s) : "-"; }

}  // namespace

plugin::plugin(mosquitto_plugin_id_t* id, const option_list& options)
    : id_(id),
      broker_thread_(std::this_thread::get_id()),
      log_([this](log_level level, std::string_view line) { log(level, line); }) {
    config_ = std::make_shared<const plugin_config>(parse_plugin_config(options));
    check_listeners();
    trust_ = tenant_trust::load(config_->tenant_ca_file, config_->ica_file, config_->root_ca_file);
    watcher_ = std::make_unique<crl_watcher>(trust_, config_->crl_files, config_->crl_poll_interval, revocations_,
                                             queue_, log_);
    watcher_->load_initial();
    authorizer_ = std::make_unique<authorizer>(config_, trust_, revocations_);
    acl_ = std::make_unique<acl_policy>(config_->acl_rules);
    std::string acl;
    for (const auto& rule : config_->acl_rules) {
        acl += (acl.empty() ? "" : ",") + std::string(rule.access == topic_access::read    ? "read:"
                                                      : rule.access == topic_access::write ? "write:"
                                                                                           : "readwrite:") +
               rule.pattern;
    }
    log_.notice("devicegate: started tenant_ca=\"" + log_safe(subject_line(trust_->certificate(ca_role::sub_ca)), 200) +
                "\" crl_files=" + std::to_string(config_->crl_files.size()) + " acl=" + acl);
}

plugin::~plugin() {
    for (int event : registered_) {
        MOSQ_FUNC_generic_callback cb = nullptr;
        switch (event) {
            case MOSQ_EVT_BASIC_AUTH: cb = basic_auth_callback; break;
            case MOSQ_EVT_ACL_CHECK: cb = acl_check_callback; break;
            case MOSQ_EVT_TICK: cb = tick_callback; break;
            case MOSQ_EVT_DISCONNECT: cb = disconnect_callback; break;
            case MOSQ_EVT_RELOAD: cb = reload_callback; break;
            default: continue;
        }
        mosquitto_callback_unregister(id_, event, cb, nullptr);
    }
    if (watcher_) watcher_->stop();
}

void plugin::register_callbacks() {
    const std::pair<int, MOSQ_FUNC_generic_callback> callbacks[] = {
        {MOSQ_EVT_BASIC_AUTH, basic_auth_callback}, {MOSQ_EVT_ACL_CHECK, acl_check_callback},
        {MOSQ_EVT_TICK, tick_callback},             {MOSQ_EVT_DISCONNECT, disconnect_callback},
        {MOSQ_EVT_RELOAD, reload_callback},
    };
    for (const auto& [event, cb] : callbacks) {
        int rc = mosquitto_callback_register(id_, event, cb, nullptr, this);
        if (rc != MOSQ_ERR_SUCCESS) {
            throw std::runtime_error("mosquitto_callback_register(" + std::to_string(event) +
                                     ") failed: " + mosquitto_strerror(rc));
        }
        registered_.push_back(event);
    }
    watcher_->start();
}

void plugin::log(log_level level, std::string_view line) {
    if (std::this_thread::get_id() == broker_thread_) {
        mosquitto_log_printf(mosquitto_level(level), "%.*s", static_cast<int>(line.size()), line.data());
    } else {
        queue_.push_log(level, std::string(line));
    }
}

void plugin::check_listeners() {
    if (config_->listener_check == listener_check_mode::off) return;
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string conf = config_path_from_cmdline(cmdline);
    if (conf.empty()) {
        log_.warning("devicegate: listener_check: mosquitto was started without -c; cannot check listeners");
        return;
    }
    bool bypass = false;
    for (const auto& f : check_mosquitto_config(conf)) {
        bool fatal = f.bypass && config_->listener_check == listener_check_mode::enforce;
        log_.log(f.bypass ? log_level::error : log_level::warning,
                 std::string("devicegate: listener_check: ") + (f.bypass ? "BYPASS " : "") + f.file + ":" +
                     std::to_string(f.line) + ": " + f.setting + ": " + f.why);
        bypass = bypass || fatal;
    }
    if (bypass) {
        throw config_error("listener_check",
                           "mosquitto.conf has settings that would bypass DeviceGate (logged above); fix them, or "
                           "set plugin_opt_listener_check warn to start anyway");
    }
}

int plugin::on_basic_auth(mosquitto_evt_basic_auth& event) {
    struct mosquitto* client = event.client;
    const char* client_id = mosquitto_client_id(client);
    x509_ptr leaf(static_cast<X509*>(mosquitto_client_certificate(client)));
    decision d = authorizer_->authorize(leaf.get(), client_id != nullptr ? client_id : "", std::time(nullptr));
    if (d.why == reason::ok) {
        int rc = mosquitto_set_username(client, d.device_id.c_str());
        if (rc != MOSQ_ERR_SUCCESS) {
            d.why = reason::internal_error;
            d.detail = std::string("mosquitto_set_username failed: ") + mosquitto_strerror(rc);
        }
    }
    if (d.why == reason::ok) {
        sessions_.admit(client, d.device_id, d.serial);
        ++admits_;
        log_.info("devicegate: allow client=" + d.device_id + " serial=" + d.serial_hex +
                  " cache=" + (d.cache_hit ? "hit" : "miss"));
        return MOSQ_ERR_SUCCESS;
    }
    ++denies_[static_cast<std::size_t>(d.why)];
    log_.notice("devicegate: deny client=" + or_dash(client_id) + " reason=" + std::string(to_string(d.why)) +
                " serial=" + d.serial_hex + " device=" + (d.device_id.empty() ? "-" : d.device_id) +
                " address=" + or_dash(mosquitto_client_address(client)) + " detail=\"" + log_safe(d.detail, 300) +
                "\"");
    return MOSQ_ERR_AUTH;
}

int plugin::on_acl_check(mosquitto_evt_acl_check& event) {
    if (event.access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
    const char* client_id = mosquitto_client_id(event.client);
    const std::string* device = client_id != nullptr ? sessions_.device_of(event.client, client_id) : nullptr;
    const char* what = event.access == MOSQ_ACL_WRITE ? "publish" : event.access == MOSQ_ACL_SUBSCRIBE ? "subscribe" : "receive";
    if (device == nullptr) {
        ++denies_[static_cast<std::size_t>(reason::not_authenticated)];
        log_.error("devicegate: deny client=" + or_dash(client_id) + " reason=not_authenticated access=" + what +
                   " topic=\"" + or_dash(event.topic) +
                   "\" detail=\"client was never admitted by DeviceGate; is the plugin bypassed "
                   "(use_identity_as_username, password_file)?\"");
        return MOSQ_ERR_ACL_DENIED;
    }
    topic_access wanted = event.access == MOSQ_ACL_WRITE ? topic_access::write : topic_access::read;
    if (event.topic != nullptr && acl_->allows(*device, event.topic, wanted)) {
        return MOSQ_ERR_SUCCESS;
    }
    ++denies_[static_cast<std::size_t>(reason::acl_denied)];
    log_.notice("devicegate: deny client=" + *device + " reason=acl_denied access=" + what + " topic=\"" +
                or_dash(event.topic) + "\"");
    return MOSQ_ERR_ACL_DENIED;
}

int plugin::on_tick(mosquitto_evt_tick&) {
    auto batch = queue_.drain();
    for (auto& [level, line] : batch.logs) log(level, line);
    if (batch.dropped_logs > 0) {
        log(log_level::warning, "devicegate: " + std::to_string(batch.dropped_logs) +
                                    " log lines from background threads were dropped (queue full)");
    }
    for (const auto& request : batch.kicks) {
        auto ids = request.everyone ? sessions_.all_ids() : sessions_.ids_holding(request.serials);
        for (const auto& id : ids) kick(id, request.why);
    }
    return MOSQ_ERR_SUCCESS;
}

void plugin::kick(const std::string& device_id, const std::string& why) {
    // Never NULL or empty: mosquitto_kick_client_by_clientid(NULL, ...) disconnects everyone.
    if (device_id.empty()) return;
    ++kicks_;
    log(log_level::notice, "devicegate: kick client=" + device_id + " reason=" + why);
    mosquitto_kick_client_by_clientid(device_id.c_str(), false);
}

int plugin::on_disconnect(mosquitto_evt_disconnect& event) {
    const char* client_id = mosquitto_client_id(event.client);
    if (client_id != nullptr) sessions_.remove(event.client, client_id);
    return MOSQ_ERR_SUCCESS;
}

int plugin::on_reload(mosquitto_evt_reload&) {
    log(log_level::notice, "devicegate: reload requested (SIGHUP): re-reading CRL files");
    watcher_->request_reload();
    return MOSQ_ERR_SUCCESS;
}

}  // namespace devicegate
