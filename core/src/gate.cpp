#include "devicegate/gate.hpp"

#include "devicegate/listener_check.hpp"

#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

namespace devicegate {

namespace {

std::string or_dash(const char* s) { return s != nullptr && *s != '\0' ? log_safe(s) : "-"; }
/// For an unquoted field: a client id claimed by a client that was not admitted.
std::string word_or_dash(const char* s) { return s != nullptr && *s != '\0' ? log_word(s) : "-"; }

const char* to_string(acl_action action) {
    switch (action) {
        case acl_action::publish: return "publish";
        case acl_action::subscribe: return "subscribe";
        case acl_action::receive: return "receive";
    }
    return "receive";
}

std::string format_duration(std::chrono::milliseconds d) {
    return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + "s" : std::to_string(d.count()) + "ms";
}

const char* to_string(ocsp_mode mode) {
    return mode == ocsp_mode::off ? "off" : mode == ocsp_mode::soft ? "soft" : "hard";
}

}  // namespace

void admission::refuse(reason why, std::string detail) {
    verdict.why = why;
    verdict.detail = std::move(detail);
}

std::string default_state_dir(const plugin_config& config, const std::string& conf_path) {
    std::string dir = config.state_dir;
    if (dir.empty() && !conf_path.empty()) dir = persistence_location(conf_path);
    if (dir.empty()) dir = "/var/lib/mosquitto";
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return dir;
}

std::string default_broker_id(const plugin_config& config) {
    if (!config.broker_id.empty()) return config.broker_id;
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    return host;
}

std::string acl_summary(const std::vector<acl_rule>& rules) {
    std::string out;
    for (const auto& rule : rules) {
        out += (out.empty() ? "" : ",") + std::string(rule.access == topic_access::read    ? "read:"
                                                      : rule.access == topic_access::write ? "write:"
                                                                                           : "readwrite:") +
               rule.pattern;
    }
    return out;
}

gate::gate(const option_list& options, std::string conf_path, log_sink sink)
    : sink_(std::move(sink)),
      log_([this](log_level level, std::string_view line) { log(level, line); }),
      conf_path_(std::move(conf_path)) {
    config_ = std::make_shared<const plugin_config>(parse_plugin_config(options));
    check_listeners();
    trust_ = tenant_trust::load(config_->tenant_ca_file, config_->ica_file, config_->root_ca_file);
    start_crl_and_ocsp();
    if (config_->redis) start_redis();
    if (!config_->service_ca_file.empty()) {
        service_trust_ = tenant_trust::load(config_->service_ca_file, config_->ica_file, config_->root_ca_file);
    }
    authorizer_ = std::make_unique<authorizer>(
        config_, trust_, revocations_, config_->redis ? &denylist_ : nullptr, ocsp_cache_.get(),
        ocsp_fetcher_ && config_->ocsp_sub_ca ? &ocsp_fetcher_->sub_ca_fingerprint() : nullptr, service_trust_);
    tenant_pin_ = pin_for(trust_.get());
    if (service_trust_) service_pin_ = pin_for(service_trust_.get());
    acl_ = std::make_unique<acl_policy>(config_->acl_rules);
    service_acl_ = std::make_unique<acl_policy>(config_->service_rules);
    deny_limits_ = config_->deny_limit;
    log_.notice("devicegate: started tenant_ca=\"" + log_safe(subject_line(trust_->certificate(ca_role::sub_ca)), 200) +
                "\" crl_files=" + std::to_string(config_->crl_files.size()) +
                " crl_urls=" + std::to_string(config_->crl_urls.size()) + " acl=" + acl_summary(config_->acl_rules) +
                " redis=" + (config_->redis ? config_->redis->describe() : std::string("off")) +
                " first_connect_jobs=" + (jobs_ ? "on" : "off") + " ocsp=" + to_string(config_->ocsp) +
                " services=" + std::to_string(config_->service_names.size()));
}

gate::~gate() { stop(); }

void gate::start_crl_and_ocsp() {
    crl_url_options url_opts;
    url_opts.refresh = config_->crl_refresh;
    url_opts.timeout = config_->crl_fetch_timeout;
    url_opts.retry = std::min(config_->crl_retry, config_->crl_refresh);
    url_opts.max_body_bytes = config_->crl_max_bytes;
    url_opts.state_dir = default_state_dir(*config_, conf_path_);  // with or without Redis
    url_opts.clock_skew = config_->clock_skew;
    watcher_ = std::make_unique<crl_watcher>(trust_, config_->crl_files, config_->crl_poll_interval, revocations_,
                                             queue_, log_, config_->crl_urls, url_opts);
    watcher_->load_initial();
    if (config_->ocsp == ocsp_mode::off) return;
    ocsp_cache_ = std::make_unique<ocsp_cache>(config_->ocsp_cache_size, config_->ocsp_max_ttl);
    ocsp_fetcher::options o;
    o.responder_override = config_->ocsp_responder_url;
    o.nonce = config_->ocsp_nonce;
    o.timeout = config_->ocsp_timeout;
    o.skew = config_->clock_skew;
    o.max_age = config_->ocsp_max_ttl;
    o.refresh_ahead = config_->ocsp_refresh_ahead;
    o.sub_ca = config_->ocsp_sub_ca;
    o.sub_ca_responder_override = config_->ocsp_sub_ca_responder_url;
    ocsp_fetcher_ = std::make_unique<ocsp_fetcher>(o, trust_, *ocsp_cache_, queue_, log_);
}

void gate::start_redis() {
    state_dir_ = default_state_dir(*config_, conf_path_);
    broker_id_ = default_broker_id(*config_);
    redis_model model{config_->redis_prefix};
    denylist_sync_ = std::make_unique<denylist_sync>(
        denylist_sync::options{*config_->redis, model, config_->denylist_resync_interval,
                               state_dir_ + "/devicegate-denylist.json"},
        denylist_, queue_, log_);
    denylist_sync_->load_cache();
    if (config_->first_connect_jobs) {
        job_producer::options o;
        o.redis = *config_->redis;
        o.model = model;
        o.journal_file = state_dir_ + "/devicegate-jobs.journal";
        o.memory_limit = config_->job_memory_limit;
        o.journal_max_bytes = config_->job_journal_max_bytes;
        jobs_ = std::make_unique<job_producer>(std::move(o), log_);
    }
    if (config_->fleet_sessions) start_fleet(model);
    log_.notice("devicegate: redis " + config_->redis->describe() + " prefix=" + config_->redis_prefix +
                " state_dir=" + state_dir_ + " broker_id=" + broker_id_);
}

void gate::start_fleet(const redis_model& model) {
    fleet_ = std::make_unique<fleet_registry>(
        fleet_registry::options{*config_->redis, model, broker_id_, config_->broker_heartbeat_interval,
                                config_->broker_heartbeat_timeout, config_->clones},
        log_, [this] {  // on dg-fleet: atomics only
            heartbeat_extras e{denylist_.synced_at.load(), denylist_sync_->link_up(), 0};
            if (jobs_) e.job_backlog = jobs_->stats().buffered.load() + jobs_->stats().journaled.load();
            return e;
        });
}

void gate::check_listeners() {
    if (config_->listener_check == listener_check_mode::off) return;
    if (conf_path_.empty()) {
        log_.warning("devicegate: listener_check: mosquitto was started without -c; cannot check listeners");
        return;
    }
    bool bypass = false;
    for (const auto& f : check_mosquitto_config(conf_path_)) {
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

handshake_pin gate::pin_for(const tenant_trust* trust) const {
    if (config_->leaf_signature_always) return handshake_pin::refused("plugin_opt_leaf_signature always");
    if (config_->listener_check == listener_check_mode::off) {
        return handshake_pin::refused("plugin_opt_listener_check off: the listeners' cafiles are not read");
    }
    if (conf_path_.empty()) return handshake_pin::refused("mosquitto was started without -c");
    return handshake_pin::evaluate(listener_tls_settings(conf_path_), trust->certificate(ca_role::sub_ca));
}

// The first tick: mosquitto has started its listeners (src/mosquitto.c: plugins, then
// listeners__start, then the main loop), so their stores hold what the cafiles held then.
void gate::confirm_pins() {
    const bool tenant = tenant_pin_->confirm();
    const bool service = service_pin_ && service_pin_->confirm();
    authorizer_->set_leaf_signatures(tenant ? leaf_signature::verified_by_handshake : leaf_signature::verify,
                                     service ? leaf_signature::verified_by_handshake : leaf_signature::verify);
    leaf_signature_by_handshake_ = tenant;
    auto line = [](const char* ca, const handshake_pin& pin) {
        return pin.proven()
                   ? std::string("devicegate: leaf_signature=handshake ca=") + ca +
                         ": every listener's cafile holds this CA as the only certificate with its name, so "
                         "mosquitto's TLS handshake verified each device certificate's signature with its key; "
                         "not verified again (plugin_opt_leaf_signature always to verify anyway)"
                   : std::string("devicegate: leaf_signature=per_connect ca=") + ca + ": " + pin.why_not() +
                         "; each certificate's signature is verified again at its first connect";
    };
    log(log_level::notice, line("tenant", *tenant_pin_));
    if (service_pin_) log(log_level::notice, line("service", *service_pin_));
    tenant_pin_.reset();
    service_pin_.reset();
}

void gate::start() {
    broker_.assert_on_thread("gate::start");
    watcher_->start();
    if (denylist_sync_) denylist_sync_->start();
    if (jobs_) jobs_->start();
    if (fleet_) fleet_->start();
    if (ocsp_fetcher_) ocsp_fetcher_->start();
}

void gate::stop() noexcept {
    if (fleet_) fleet_->stop();  // first: its heartbeat reads jobs_ and denylist_sync_
    if (ocsp_fetcher_) ocsp_fetcher_->stop();
    if (jobs_) jobs_->stop();  // journals what it could not deliver
    if (denylist_sync_) denylist_sync_->stop();
    if (watcher_) watcher_->stop();
    // What the threads logged last (the job producer's lost jobs at a stop with the journal
    // unwritable) would otherwise wait for a tick that never comes.
    if (!broker_.on_thread()) return;
    try {
        emit_logs(queue_.drain());
    } catch (...) {  // noexcept: out of memory at shutdown loses these lines, nothing else
    }
}

void gate::emit_logs(const broker_queue::batch& batch) {
    for (const auto& [level, line] : batch.logs) log(level, line);
    if (batch.dropped_logs > 0) {
        log(log_level::warning, "devicegate: " + std::to_string(batch.dropped_logs) +
                                    " log lines from background threads were dropped (queue full)");
    }
}

void gate::log(log_level level, std::string_view line) {
    if (broker_.on_thread()) {
        if (sink_) sink_(level, line);
    } else {
        queue_.push_log(level, std::string(line));
    }
}

admission gate::admit(X509* leaf, std::string_view client_id, std::time_t now) {
    broker_.assert_on_thread("gate::admit");
    admission a;
    a.verdict = authorizer_->authorize(leaf, client_id, now);
    a.ocsp_fetch = a.verdict.ocsp_fetch && ocsp_fetcher_ != nullptr;
    if (!a.admitted()) return a;
    // A service is never registered as a device (issue 12, finding 6).
    if (a.verdict.kind == identity_kind::device) a.job = plan_job(leaf, a.verdict);
    a.learned_crl_urls = plan_crl_urls(leaf, a.verdict);
    return a;
}

std::optional<device_certificate> gate::plan_job(X509* leaf, const decision& d) {
    // Once per certificate and broker run: reconnects cost nothing; Redis decides "first".
    // A new generation (Redis lost its data) forgets what Redis never kept.
    if (!jobs_ || authorizer_->job_handed_over(d.fingerprint, jobs_->generation())) return std::nullopt;
    // The DER only: the job producer's thread writes the PEM (issue 13).
    const int len = i2d_X509(leaf, nullptr);
    device_certificate cert;
    if (len > 0) {
        cert.certificate_der.resize(static_cast<std::size_t>(len));
        auto* out = reinterpret_cast<unsigned char*>(cert.certificate_der.data());
        if (i2d_X509(leaf, &out) != len) cert.certificate_der.clear();
    }
    if (cert.certificate_der.empty()) {
        log(log_level::error, "devicegate: cannot encode the certificate of device=" + d.device_id);
        return std::nullopt;
    }
    cert.device_id = d.device_id;
    cert.serial_hex = d.serial_hex;
    cert.fingerprint_sha256 = fingerprint_hex(d.fingerprint);
    cert.first_seen = static_cast<std::int64_t>(std::time(nullptr));
    cert.broker_id = broker_id_;
    return cert;
}

std::vector<std::string> gate::plan_crl_urls(X509* leaf, const decision& d) const {
    std::vector<std::string> out;
    if (!config_->crl_distribution_points || d.cache_hit) return out;
    for (auto& url : crl_distribution_point_urls(leaf)) {
        if (cdp_urls_.size() + out.size() >= max_learned_crl_urls) break;
        if (cdp_urls_.count(url) == 0 && std::find(out.begin(), out.end(), url) == out.end()) out.push_back(url);
    }
    return out;
}

void gate::settle(const void* client, X509* leaf, const admission& a, const char* client_id, const char* address) {
    broker_.assert_on_thread("gate::settle");
    const decision& d = a.verdict;
    if (a.ocsp_fetch) ocsp_fetcher_->request(d.fingerprint, leaf, d.serial_hex);
    if (!a.admitted()) {
        count_deny(d.why);
        log_.notice("devicegate: deny client=" + word_or_dash(client_id) + " reason=" + std::string(to_string(d.why)) +
                    " serial=" + d.serial_hex + " device=" + (d.device_id.empty() ? "-" : d.device_id) +
                    " address=" + word_or_dash(address) + " detail=\"" + log_safe(d.detail, 300) + "\"");
        return;
    }
    session_record& record = sessions_.admit(client, d.device_id, d.serial, d.fingerprint, d.serial_hex, d.kind);
    if (fleet_ && d.kind == identity_kind::device) {
        record.fleet_seq = fleet_->admitted(d.device_id, address, d.fingerprint, d.serial, d.serial_hex);
    }
    if (ocsp_cache_) ocsp_cache_->set_active(d.fingerprint, true, leaf);
    ++admits_;
    if (a.job && jobs_) {
        // The generation before the hand-over: a job dropped from here on (submit's own bound,
        // a full journal) moves it on, so that the device's next connect submits again.
        const std::uint64_t generation = jobs_->generation();
        jobs_->submit(*a.job);
        authorizer_->note_job_handed_over(d.fingerprint, generation);
    }
    for (const auto& url : a.learned_crl_urls) {
        if (cdp_urls_.size() < max_learned_crl_urls && cdp_urls_.insert(url).second) watcher_->add_url(url);
    }
    // Debug: mosquitto logs every connect at notice already ("New client connected ... u'<id>'"),
    // and its default log_type (error, warning, notice, information) drops debug lines.
    log_.debug(std::string("devicegate: allow ") + (d.kind == identity_kind::service ? "service=" : "client=") +
               d.device_id + " serial=" + d.serial_hex + " cache=" + (d.cache_hit ? "hit" : "miss"));
}

reason gate::check_acl(const void* client, const char* client_id, const char* topic, acl_action action,
                       std::chrono::steady_clock::time_point now) {
    broker_.assert_on_thread("gate::check_acl");
    session_record* record = client_id != nullptr ? sessions_.find(client, client_id) : nullptr;
    if (record == nullptr) {
        count_deny(reason::not_authenticated);
        log_.error("devicegate: deny client=" + word_or_dash(client_id) + " reason=not_authenticated access=" +
                   to_string(action) + " topic=\"" + or_dash(topic) +
                   "\" detail=\"client was never admitted by DeviceGate; is the plugin bypassed "
                   "(use_identity_as_username, password_file)?\"");
        return reason::not_authenticated;
    }
    const std::string id = client_id;
    reason why = record->online ? reason::ok : check_offline(*record, id);
    if (why == reason::ok) {
        const topic_access wanted = action == acl_action::publish ? topic_access::write : topic_access::read;
        // A service has its own rules only; device rules (%c) never apply to it, nor its to devices.
        const acl_policy& rules = record->kind == identity_kind::service ? *service_acl_ : *acl_;
        if (topic != nullptr && rules.allows(id, topic, wanted)) return reason::ok;
        why = reason::acl_denied;
    }
    count_deny(why);
    log_deny(*record, id, why, action, topic, now);
    return why;
}

// An offline session's will (src/context.c:184) or queued message (src/subs.c:72): the
// device is not there to present its certificate, so its revocation is re-checked here.
reason gate::check_offline(const session_record& record, const std::string& id) {
    return authorizer_->revocation(record.serial, id, record.serial_hex(), record.fingerprint, std::time(nullptr));
}

void gate::log_deny(session_record& record, const std::string& id, reason why, acl_action action, const char* topic,
                    std::chrono::steady_clock::time_point now) {
    deny_note note = note_deny(record.denies(), deny_limits_, topic != nullptr ? topic : "", now);
    if (note.summary > 0) {
        log_.notice("devicegate: deny_summary client=" + id + " suppressed=" + std::to_string(note.summary) +
                    " interval=" + format_duration(deny_limits_.log_interval) + " last_topic=\"" +
                    log_safe(note.summary_topic) + "\"");
    }
    if (note.log_line) {
        log_.notice("devicegate: deny client=" + id + " reason=" + std::string(to_string(why)) + " access=" +
                    to_string(action) + " topic=\"" + or_dash(topic) + "\"" +
                    (record.online ? "" : " session=offline"));
    } else if (record.suppressed_denies() == 1) {
        summaries_due_.push_back(id);
    }
    if (note.kick && record.online) {
        log_.notice("devicegate: kick client=" + id + " reason=too_many_denials count=" +
                    std::to_string(deny_limits_.disconnect_after) +
                    " interval=" + format_duration(deny_limits_.disconnect_interval));
        sessions_.request_kick(id);
    }
}

void gate::disconnected(const void* client, const char* client_id, bool persists) {
    if (client_id == nullptr) return;
    const std::string id(client_id);
    const session_record* record = sessions_.disconnected(client, id, persists, std::chrono::steady_clock::now());
    if (record == nullptr) return;  // not this client's, or already offline
    if (fleet_) fleet_->disconnected(id, record->fleet_seq);
    if (ocsp_cache_) ocsp_cache_->set_active(record->fingerprint, false);
}

void gate::reload() {
    log(log_level::notice, "devicegate: reload requested (SIGHUP): re-reading CRL files");
    reauthenticating_ = true;
    watcher_->request_reload();
}

bool gate::keeps_offline_session(const void* leaf) {
    if (!reauthenticating_ || leaf != nullptr) return false;
    ++offline_reauths_;
    return true;
}

void gate::sweep_sessions(std::chrono::steady_clock::time_point now) {
    sessions_.sweep_disconnected();
    for (const auto& id : sessions_.sweep_offline(now, config_->offline_session_retention,
                                                  config_->max_offline_sessions)) {
        log_.info("devicegate: forget offline session client=" + id);
    }
    std::vector<std::string> still_due;
    for (auto& id : summaries_due_) {
        session_record* r = sessions_.find(id);
        if (r == nullptr) continue;
        std::string topic;
        if (auto n = flush_deny_summary(r->denies(), deny_limits_, now, topic); n > 0) {
            log_.notice("devicegate: deny_summary client=" + id + " suppressed=" + std::to_string(n) +
                        " interval=" + format_duration(deny_limits_.log_interval) + " last_topic=\"" +
                        log_safe(topic) + "\"");
        } else if (r->suppressed_denies() > 0) {
            still_due.push_back(std::move(id));
        }
    }
    summaries_due_ = std::move(still_due);
}

tick_work gate::tick(std::chrono::steady_clock::time_point now) {
    broker_.assert_on_thread("gate::tick");
    if (tenant_pin_) confirm_pins();
    auto batch = queue_.drain();
    emit_logs(batch);
    if (reauthenticating_ && offline_reauths_ > 0) {
        log(log_level::notice, "devicegate: reload: kept " + std::to_string(offline_reauths_) +
                                   " offline sessions (no certificate to re-check; revocation is re-checked on "
                                   "their ACL checks and their devices' next CONNECT)");
    }
    reauthenticating_ = false;
    offline_reauths_ = 0;
    sweep_sessions(now);
    tick_work work;
    work.kicks = resolve(batch.kicks);
    for (auto& id : sessions_.take_pending_kicks()) {
        ++kicks_;
        work.kicks.push_back({std::move(id), reason::acl_denied});
    }
    if (fleet_) {
        fleet_->acknowledge(batch.kicks);  // resolved into this tick's kicks above
        auto current = [this](const std::string& id) -> std::uint64_t {
            const session_record* record = sessions_.find(id);
            return record != nullptr && record->online ? record->fleet_seq : 0;
        };
        for (auto& [id, why] : fleet_->take_kicks(current)) {
            ++kicks_;
            work.kicks.push_back({std::move(id), why});
        }
    }
    if (config_->stats_interval.count() > 0 && now >= next_stats_) {
        next_stats_ = now + config_->stats_interval;
        work.stats = stats(static_cast<std::int64_t>(std::time(nullptr)));
    }
    return work;
}

std::vector<client_kick> resolve_kicks(const session_registry& sessions, const std::vector<kick_request>& requests) {
    std::vector<client_kick> out;
    for (const auto& request : requests) {
        auto ids = request.everyone ? sessions.all_ids() : sessions.ids_holding(request.serials);
        for (const auto& id : request.device_ids) {
            if (sessions.contains(id)) ids.push_back(id);
        }
        for (auto& id : ids) {
            // Never empty: mosquitto_kick_client_by_clientid(NULL, ...) disconnects everyone.
            if (!id.empty()) out.push_back({std::move(id), request.why});
        }
    }
    return out;
}

std::vector<client_kick> gate::resolve(const std::vector<kick_request>& requests) {
    auto kicks = resolve_kicks(sessions_, requests);
    for (const auto& k : kicks) {
        ++kicks_;
        log(log_level::notice, "devicegate: kick client=" + k.client_id + " reason=" + std::string(to_string(k.why)));
    }
    return kicks;
}

std::vector<std::pair<std::string, std::string>> gate::stats(std::int64_t now) const {
    std::vector<std::pair<std::string, std::string>> out;
    out.emplace_back("admits", std::to_string(admits_));
    for (std::size_t r = 1; r < denies_.size(); ++r) {
        out.emplace_back("denies/" + std::string(to_string(static_cast<reason>(r))), std::to_string(denies_[r]));
    }
    out.emplace_back("kicks", std::to_string(kicks_));
    out.emplace_back("sessions", std::to_string(sessions_.online()));
    out.emplace_back("sessions_offline", std::to_string(sessions_.offline()));
    out.emplace_back("verify_cache", std::to_string(authorizer_->cache_size()));
    out.emplace_back("leaf_signature", leaf_signature_by_handshake_ ? "handshake" : "per_connect");
    if (ocsp_cache_) {
        out.emplace_back("ocsp/cache", std::to_string(ocsp_cache_->size()));
        out.emplace_back("ocsp/fetch_failures", std::to_string(ocsp_fetcher_->failures()));
    }
    crl_stats(out, now);
    redis_stats(out, now);
    if (fleet_) fleet_->append_stats(out);
    for (auto& [topic, value] : out) topic.insert(0, "$SYS/broker/devicegate/");
    return out;
}

void gate::crl_stats(std::vector<std::pair<std::string, std::string>>& out, std::int64_t now) const {
    auto crl = revocations_.load();
    if (!crl) return;
    std::int64_t newest = 0, next = 0;
    for (const auto& c : crl->crls()) {
        newest = std::max<std::int64_t>(newest, c.this_update);
        if (c.next_update != 0) next = next == 0 ? c.next_update : std::min<std::int64_t>(next, c.next_update);
    }
    out.emplace_back("crl/revoked_serials", std::to_string(crl->revoked_leaves().size()));
    out.emplace_back("crl/age_seconds", std::to_string(now - newest));
    out.emplace_back("crl/next_update_in_seconds", next == 0 ? "none" : std::to_string(next - now));
    out.emplace_back("crl/chain_revoked", crl->chain_revoked() ? "1" : "0");
    out.emplace_back("crl/rejected", std::to_string(watcher_->rejected()));
}

void gate::redis_stats(std::vector<std::pair<std::string, std::string>>& out, std::int64_t now) const {
    if (denylist_sync_) {
        auto list = denylist_.list.load();
        const std::int64_t stale_since = denylist_.stale_since.load();
        out.emplace_back("redis/link", denylist_sync_->link_up() ? "up" : "down");
        out.emplace_back("redis/link_down_events", std::to_string(denylist_sync_->link_downs()));
        out.emplace_back("denylist/size", std::to_string(list ? list->size() : 0));
        out.emplace_back("denylist/age_seconds", std::to_string(now - denylist_.synced_at.load()));
        out.emplace_back("denylist/stale_seconds", std::to_string(stale_since == 0 ? 0 : now - stale_since));
        out.emplace_back("denylist/malformed", std::to_string(denylist_sync_->malformed_entries()));
    }
    if (!jobs_) return;
    const auto& j = jobs_->stats();
    out.emplace_back("jobs/link", j.link_up ? "up" : "down");
    out.emplace_back("jobs/link_down_events", std::to_string(j.link_downs.load()));
    out.emplace_back("jobs/submitted", std::to_string(j.submitted.load()));
    out.emplace_back("jobs/enqueued_first_connect", std::to_string(j.first_connect.load()));
    out.emplace_back("jobs/enqueued_certificate_changed", std::to_string(j.certificate_changed.load()));
    out.emplace_back("jobs/already_known", std::to_string(j.known.load()));
    out.emplace_back("jobs/rejected", std::to_string(j.rejected.load()));
    out.emplace_back("jobs/error_replies", std::to_string(j.error_replies.load()));
    out.emplace_back("jobs/overflow", std::to_string(j.overflow.load()));
    out.emplace_back("jobs/buffered", std::to_string(j.buffered.load()));
    out.emplace_back("jobs/journaled", std::to_string(j.journaled.load()));
    out.emplace_back("jobs/journal_write_failures", std::to_string(j.journal_failures.load()));
}

}  // namespace devicegate
