#pragma once
// The plugin instance: owns the core objects and turns mosquitto events into calls on them.
// Every method runs on the broker thread (mosquitto calls plugins only from there).
extern "C" {
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
}

#include "devicegate/acl.hpp"
#include "devicegate/authorizer.hpp"
#include "devicegate/broker_queue.hpp"
#include "devicegate/config.hpp"
#include "devicegate/crl_watcher.hpp"
#include "devicegate/denylist_sync.hpp"
#include "devicegate/job_producer.hpp"
#include "devicegate/ocsp_fetcher.hpp"
#include "devicegate/log.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/session_registry.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <unordered_set>

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

    /// Registers every callback; on failure unregisters those already registered and throws.
    void register_callbacks();

    /// Logs now on the broker thread, or queues the line for the next TICK elsewhere.
    void log(log_level level, std::string_view line);

private:
    void check_listeners();
    void start_redis();
    void kick(const std::string& device_id, const std::string& why);
    void submit_first_connect(X509* leaf, const decision& d);
    void publish_stats();

    mosquitto_plugin_id_t* id_;
    std::thread::id broker_thread_;
    std::string conf_path_;  // mosquitto's -c argument
    broker_queue queue_;
    logger log_;
    std::shared_ptr<const plugin_config> config_;
    std::shared_ptr<const tenant_trust> trust_;
    snapshot_slot<revocation_snapshot> revocations_;
    std::unique_ptr<crl_watcher> watcher_;
    std::unique_ptr<authorizer> authorizer_;
    std::unique_ptr<acl_policy> acl_;
    std::unique_ptr<ocsp_cache> ocsp_cache_;
    std::unique_ptr<ocsp_fetcher> ocsp_fetcher_;
    denylist_state denylist_;
    std::unique_ptr<denylist_sync> denylist_sync_;
    std::unique_ptr<job_producer> jobs_;
    std::string broker_id_;
    std::unordered_set<sha256_digest, sha256_hash> submitted_;  // certificates handed to jobs_
    std::uint64_t submitted_generation_ = 0;                     // jobs_->generation() when submitted_ was valid
    std::unordered_set<std::string> cdp_urls_;                   // CDP URLs handed to watcher_
    std::chrono::steady_clock::time_point next_stats_{};
    session_registry sessions_;
    std::array<std::uint64_t, static_cast<std::size_t>(reason::count_)> denies_{};
    std::uint64_t admits_ = 0;
    std::uint64_t kicks_ = 0;
    std::vector<int> registered_;
};

}  // namespace devicegate
