#pragma once
// DeviceGate's own rules behind the mosquitto adapter: the gate owns the core objects (CRL
// watcher, authorizer, ACL, OCSP, deny-list, first-connect jobs, sessions, counters) and
// answers the broker's questions in plain values, so that plugin/ only translates mosquitto
// events into calls here and the answers into mosquitto_* calls, and unit tests drive every
// rule without a broker.
//
// Threads: the constructor, start(), stop() and every broker-side method run on the thread
// that constructed the gate (mosquitto's main loop: plugin_init and all callbacks run there).
// Background threads only queue log lines and kick requests for the next tick().
#include "devicegate/acl.hpp"
#include "devicegate/authorizer.hpp"
#include "devicegate/background_loop.hpp"
#include "devicegate/broker_queue.hpp"
#include "devicegate/config.hpp"
#include "devicegate/crl_watcher.hpp"
#include "devicegate/denylist_sync.hpp"
#include "devicegate/fleet_registry.hpp"
#include "devicegate/handshake_pin.hpp"
#include "devicegate/job.hpp"
#include "devicegate/job_producer.hpp"
#include "devicegate/log.hpp"
#include "devicegate/ocsp_fetcher.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/session_registry.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace devicegate {

/// CRL URLs learned from device certificates' CRL Distribution Points, at most (a device
/// must not be able to make the broker fetch arbitrary many URLs).
inline constexpr std::size_t max_learned_crl_urls = 64;

/// What the gate decided about a CONNECT, and what the adapter's admission entails.
struct admission {
    decision verdict;
    std::optional<device_certificate> job;      // the first-connect candidate to submit
    bool ocsp_fetch = false;                    // start an OCSP fetch for this certificate
    std::vector<std::string> learned_crl_urls;  // new CDP URLs for the CRL watcher

    bool admitted() const noexcept { return verdict.why == reason::ok; }
    /// The adapter could not complete an admission (e.g. mosquitto_set_username failed).
    void refuse(reason why, std::string detail);
};

enum class acl_action { publish, subscribe, receive };

struct client_kick {
    std::string client_id;  // never empty (an empty id would mean "everyone" to mosquitto)
    reason why = reason::internal_error;
};

struct tick_work {
    std::vector<client_kick> kicks;
    std::vector<std::pair<std::string, std::string>> stats;  // retained $SYS topic, value
};

/// The sessions a batch of kick requests names (by serial, by device id, or everyone), in
/// request order; ids without a session are skipped, and so is an empty id.
std::vector<client_kick> resolve_kicks(const session_registry& sessions, const std::vector<kick_request>& requests);

/// journal, deny-list cache and newest CRL per CA: state_dir, else mosquitto's persistence_location
/// (read from `conf_path`), else /var/lib/mosquitto; without trailing slashes.
std::string default_state_dir(const plugin_config& config, const std::string& conf_path);
/// broker_id, else the host name.
std::string default_broker_id(const plugin_config& config);
/// "read:devices/%c/#,write:..." for the startup line.
std::string acl_summary(const std::vector<acl_rule>& rules);

class gate {
public:
    /// `sink` writes one line to the broker's log; the gate calls it only on the broker thread.
    /// `conf_path` is mosquitto's -c argument ("" if unknown). Throws config_error or
    /// pki_error with an operator-facing message.
    gate(const option_list& options, std::string conf_path, log_sink sink);
    ~gate();
    gate(const gate&) = delete;
    gate& operator=(const gate&) = delete;

    /// Starts the background threads (after the adapter registered its callbacks).
    void start();
    /// Stops them; undelivered jobs go to the journal.
    void stop() noexcept;

    /// Broker thread: the connect decision and what it entails. No side effects: the adapter
    /// completes the admission, then calls settle().
    admission admit(X509* leaf, std::string_view client_id, std::time_t now);
    /// Broker thread: records the outcome (session, counters, log line) and hands the job,
    /// the OCSP fetch and the learned URLs to the background threads.
    void settle(const void* client, X509* leaf, const admission& a, const char* client_id, const char* address);

    /// Broker thread: ok, not_authenticated, acl_denied, or for an offline session the
    /// revocation reason (logged, rate-limited per client, and counted exactly).
    reason check_acl(const void* client, const char* client_id, const char* topic, acl_action action,
                     std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());
    /// MOSQ_EVT_DISCONNECT. `persists`: the session may outlive the connection (MQTT v5, or
    /// clean session false); the identity stays for the will and the offline queue.
    void disconnected(const void* client, const char* client_id, bool persists = false);
    /// SIGHUP: re-read the CRL files now, and accept the re-authentication of offline
    /// sessions until the next tick (see keeps_offline_session).
    void reload();
    /// BASIC_AUTH during a SIGHUP reload for a client without a certificate: an offline
    /// session (every listener requires a certificate). Refusing it makes mosquitto 2.0.11
    /// add it to the session expiry list twice and later read freed memory
    /// (src/security_default.c:1254-1256, src/session_expiry.c:77; issue 12, finding 3).
    /// Answering success admits nothing: the session cannot act until its device reconnects
    /// through a full BASIC_AUTH, and its ACL checks re-check revocation.
    bool keeps_offline_session(const void* leaf);
    /// Broker thread: writes the queued log lines, returns the kicks to perform (already
    /// logged and counted) and, every stats_interval, the $SYS statistics to publish.
    tick_work tick(std::chrono::steady_clock::time_point now);

    /// Any thread: the broker's log on the broker thread, queued for the next tick elsewhere.
    void log(log_level level, std::string_view line);

    const plugin_config& config() const noexcept { return *config_; }
    const std::string& broker_id() const noexcept { return broker_id_; }
    const std::string& state_dir() const noexcept { return state_dir_; }
    std::vector<std::pair<std::string, std::string>> stats(std::int64_t now_unix) const;

private:
    void check_listeners();
    handshake_pin pin_for(const tenant_trust* trust) const;
    void confirm_pins();
    void start_crl_and_ocsp();
    void start_redis();
    void start_fleet(const redis_model& model);
    std::optional<device_certificate> plan_job(X509* leaf, const decision& d);
    /// Broker thread: the background threads' log lines of `batch`, and how many were dropped.
    void emit_logs(const broker_queue::batch& batch);
    std::vector<std::string> plan_crl_urls(X509* leaf, const decision& d) const;
    void count_deny(reason why) { ++denies_[static_cast<std::size_t>(why)]; }
    reason check_offline(const session_record& record, const std::string& id);
    void log_deny(session_record& record, const std::string& id, reason why, acl_action action, const char* topic,
                  std::chrono::steady_clock::time_point now);
    void sweep_sessions(std::chrono::steady_clock::time_point now);
    std::vector<client_kick> resolve(const std::vector<kick_request>& requests);
    void crl_stats(std::vector<std::pair<std::string, std::string>>& out, std::int64_t now) const;
    void redis_stats(std::vector<std::pair<std::string, std::string>>& out, std::int64_t now) const;

    broker_thread_guard broker_;
    log_sink sink_;
    broker_queue queue_;
    logger log_;
    std::string conf_path_;
    std::shared_ptr<const plugin_config> config_;
    std::shared_ptr<const tenant_trust> trust_;
    std::shared_ptr<const tenant_trust> service_trust_;  // plugin_opt_service_ca_file, or null
    // Whether the handshake verified leaf signatures (handshake_pin.hpp): decided at start,
    // confirmed at the first tick, once mosquitto has loaded its listeners' cafiles.
    std::optional<handshake_pin> tenant_pin_, service_pin_;
    bool leaf_signature_by_handshake_ = false;
    snapshot_slot<crl_set> revocations_;
    std::unique_ptr<crl_watcher> watcher_;
    std::unique_ptr<ocsp_cache> ocsp_cache_;
    std::unique_ptr<ocsp_fetcher> ocsp_fetcher_;
    std::unique_ptr<authorizer> authorizer_;
    std::unique_ptr<acl_policy> acl_;
    std::unique_ptr<acl_policy> service_acl_;
    denylist_state denylist_;
    std::unique_ptr<denylist_sync> denylist_sync_;
    std::unique_ptr<job_producer> jobs_;
    std::unique_ptr<fleet_registry> fleet_;  // one session per device across brokers
    std::string state_dir_;
    std::string broker_id_;
    std::unordered_set<std::string> cdp_urls_;                   // CDP URLs handed to watcher_
    std::chrono::steady_clock::time_point next_stats_{};
    session_registry sessions_;
    deny_limits deny_limits_;
    std::vector<std::string> summaries_due_;  // clients with suppressed deny lines
    bool reauthenticating_ = false;           // between MOSQ_EVT_RELOAD and the next tick
    std::uint64_t offline_reauths_ = 0;
    std::array<std::uint64_t, static_cast<std::size_t>(reason::count_)> denies_{};
    std::uint64_t admits_ = 0;
    std::uint64_t kicks_ = 0;
};

}  // namespace devicegate
