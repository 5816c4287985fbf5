#include "devicegate_plugin.hpp"

#include "devicegate/listener_check.hpp"

#include <openssl/pem.h>
#include <unistd.h>

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
    {
        std::ifstream in("/proc/self/cmdline", std::ios::binary);
        conf_path_ = config_path_from_cmdline(
            std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
    }
    check_listeners();
    trust_ = tenant_trust::load(config_->tenant_ca_file, config_->ica_file, config_->root_ca_file);
    crl_url_options url_opts;
    url_opts.refresh = config_->crl_refresh;
    url_opts.timeout = config_->crl_fetch_timeout;
    url_opts.retry = std::min(config_->crl_retry, config_->crl_refresh);
    url_opts.max_body_bytes = config_->crl_max_bytes;
    url_opts.state_dir = resolve_state_dir(config_->state_dir, conf_path_);
    url_opts.clock_skew = config_->clock_skew;
    watcher_ = std::make_unique<crl_watcher>(trust_, config_->crl_files, config_->crl_poll_interval, revocations_,
                                             queue_, log_, config_->crl_urls, url_opts);
    watcher_->load_initial();
    if (config_->redis) start_redis();
    if (config_->ocsp != ocsp_mode::off) {
        ocsp_cache_ = std::make_unique<ocsp_cache>(config_->ocsp_cache_size, config_->ocsp_max_ttl);
        ocsp_fetcher::options o;
        o.responder_override = config_->ocsp_responder_url;
        o.nonce = config_->ocsp_nonce;
        o.timeout = config_->ocsp_timeout;
        o.skew = config_->clock_skew;
        o.refresh_ahead = config_->ocsp_refresh_ahead;
        o.sub_ca = config_->ocsp_sub_ca;
        o.sub_ca_responder_override = config_->ocsp_sub_ca_responder_url;
        ocsp_fetcher_ = std::make_unique<ocsp_fetcher>(o, trust_, *ocsp_cache_, queue_, log_);
    }
    authorizer_ = std::make_unique<authorizer>(
        config_, trust_, revocations_, config_->redis ? &denylist_ : nullptr, ocsp_cache_.get(),
        ocsp_fetcher_ && config_->ocsp_sub_ca ? &ocsp_fetcher_->sub_ca_fingerprint() : nullptr);
    acl_ = std::make_unique<acl_policy>(config_->acl_rules);
    std::string acl;
    for (const auto& rule : config_->acl_rules) {
        acl += (acl.empty() ? "" : ",") + std::string(rule.access == topic_access::read    ? "read:"
                                                      : rule.access == topic_access::write ? "write:"
                                                                                           : "readwrite:") +
               rule.pattern;
    }
    log_.notice("devicegate: started tenant_ca=\"" + log_safe(subject_line(trust_->certificate(ca_role::sub_ca)), 200) +
                "\" crl_files=" + std::to_string(config_->crl_files.size()) +
                " crl_urls=" + std::to_string(config_->crl_urls.size()) + " acl=" + acl +
                " redis=" + (config_->redis ? config_->redis->describe() : std::string("off")) +
                " first_connect_jobs=" + (jobs_ ? "on" : "off") + " ocsp=" +
                (config_->ocsp == ocsp_mode::off ? "off" : config_->ocsp == ocsp_mode::soft ? "soft" : "hard"));
}

void plugin::start_redis() {
    const std::string state_dir = resolve_state_dir(config_->state_dir, conf_path_);
    broker_id_ = config_->broker_id;
    if (broker_id_.empty()) {
        char host[256] = {};
        ::gethostname(host, sizeof host - 1);
        broker_id_ = host;
    }
    redis_model model{config_->redis_prefix};
    denylist_sync_ = std::make_unique<denylist_sync>(
        denylist_sync::options{*config_->redis, model, config_->denylist_resync_interval,
                               state_dir + "/devicegate-denylist.json"},
        denylist_, queue_, log_);
    denylist_sync_->load_cache();
    if (config_->first_connect_jobs) {
        job_producer::options o;
        o.redis = *config_->redis;
        o.model = model;
        o.journal_file = state_dir + "/devicegate-jobs.journal";
        o.memory_limit = config_->job_memory_limit;
        o.journal_max_bytes = config_->job_journal_max_bytes;
        jobs_ = std::make_unique<job_producer>(std::move(o), log_);
    }
    log_.notice("devicegate: redis " + config_->redis->describe() + " prefix=" + config_->redis_prefix +
                " state_dir=" + state_dir + " broker_id=" + broker_id_);
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
    if (ocsp_fetcher_) ocsp_fetcher_->stop();
    if (jobs_) jobs_->stop();  // journals what it could not deliver
    if (denylist_sync_) denylist_sync_->stop();
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
    if (denylist_sync_) denylist_sync_->start();
    if (jobs_) jobs_->start();
    if (ocsp_fetcher_) ocsp_fetcher_->start();
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
    const std::string& conf = conf_path_;
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
    if (d.ocsp_fetch && ocsp_fetcher_) ocsp_fetcher_->request(d.fingerprint, leaf.get(), d.serial_hex);
    if (d.why == reason::ok) {
        int rc = mosquitto_set_username(client, d.device_id.c_str());
        if (rc != MOSQ_ERR_SUCCESS) {
            d.why = reason::internal_error;
            d.detail = std::string("mosquitto_set_username failed: ") + mosquitto_strerror(rc);
        }
    }
    if (d.why == reason::ok) {
        sessions_.admit(client, d.device_id, d.serial, d.fingerprint);
        if (ocsp_cache_) ocsp_cache_->set_active(d.fingerprint, true, leaf.get());
        ++admits_;
        if (jobs_) submit_first_connect(leaf.get(), d);
        if (config_->crl_distribution_points && !d.cache_hit) {
            for (auto& url : crl_distribution_point_urls(leaf.get())) {
                if (cdp_urls_.size() < 64 && cdp_urls_.insert(url).second) watcher_->add_url(url);
            }
        }
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
        for (const auto& id : request.device_ids) {
            if (sessions_.contains(id)) ids.push_back(id);
        }
        for (const auto& id : ids) kick(id, request.why);
    }
    if (config_->stats_interval.count() > 0 && std::chrono::steady_clock::now() >= next_stats_) {
        next_stats_ = std::chrono::steady_clock::now() + config_->stats_interval;
        publish_stats();
    }
    return MOSQ_ERR_SUCCESS;
}

void plugin::submit_first_connect(X509* leaf, const decision& d) {
    // Once per certificate and broker run: reconnects cost nothing; Redis decides "first".
    if (submitted_.count(d.fingerprint) > 0) return;
    if (submitted_.size() >= 1'000'000) submitted_.clear();
    bio_ptr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_X509(bio.get(), leaf) != 1) {
        log(log_level::error, "devicegate: cannot encode the certificate of device=" + d.device_id + " as PEM");
        return;
    }
    char* pem = nullptr;
    long len = BIO_get_mem_data(bio.get(), &pem);
    device_certificate cert;
    cert.device_id = d.device_id;
    cert.serial_hex = d.serial_hex;
    cert.fingerprint_sha256 = to_hex(d.fingerprint.data(), d.fingerprint.size());
    for (auto& c : cert.fingerprint_sha256) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    cert.certificate_pem.assign(pem, static_cast<std::size_t>(len));
    cert.first_seen = static_cast<std::int64_t>(std::time(nullptr));
    cert.broker_id = broker_id_;
    jobs_->submit(std::move(cert));
    submitted_.insert(d.fingerprint);
}

void plugin::publish_stats() {
    const std::string base = "$SYS/broker/devicegate/";
    auto put = [&](const std::string& topic, const std::string& value) {
        mosquitto_broker_publish_copy(nullptr, (base + topic).c_str(), static_cast<int>(value.size()), value.data(), 0,
                                      true, nullptr);
    };
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    put("admits", std::to_string(admits_));
    for (std::size_t r = 1; r < denies_.size(); ++r) {
        put("denies/" + std::string(to_string(static_cast<reason>(r))), std::to_string(denies_[r]));
    }
    put("kicks", std::to_string(kicks_));
    put("sessions", std::to_string(sessions_.size()));
    put("verify_cache", std::to_string(authorizer_->cache_size()));
    if (ocsp_cache_) {
        put("ocsp/cache", std::to_string(ocsp_cache_->size()));
        put("ocsp/fetch_failures", std::to_string(ocsp_fetcher_->failures()));
    }
    if (auto crl = revocations_.load()) {
        std::int64_t newest = 0, next = 0;
        for (const auto& c : crl->crls()) {
            newest = std::max<std::int64_t>(newest, c.this_update);
            if (c.next_update != 0) next = next == 0 ? c.next_update : std::min<std::int64_t>(next, c.next_update);
        }
        put("crl/revoked_serials", std::to_string(crl->revoked_leaves().size()));
        put("crl/age_seconds", std::to_string(now - newest));
        put("crl/next_update_in_seconds", next == 0 ? "none" : std::to_string(next - now));
        put("crl/chain_revoked", crl->chain_revoked() ? "1" : "0");
        put("crl/rejected", std::to_string(watcher_->rejected()));
    }
    if (denylist_sync_) {
        auto list = denylist_.list.load();
        const std::int64_t stale_since = denylist_.stale_since.load();
        put("redis/link", denylist_sync_->link_up() ? "up" : "down");
        put("redis/link_down_events", std::to_string(denylist_sync_->link_downs()));
        put("denylist/size", std::to_string(list ? list->size() : 0));
        put("denylist/age_seconds", std::to_string(now - denylist_.synced_at.load()));
        put("denylist/stale_seconds", std::to_string(stale_since == 0 ? 0 : now - stale_since));
        put("denylist/malformed", std::to_string(denylist_sync_->malformed_entries()));
    }
    if (jobs_) {
        const auto& j = jobs_->stats();
        put("jobs/link", j.link_up ? "up" : "down");
        put("jobs/link_down_events", std::to_string(j.link_downs.load()));
        put("jobs/submitted", std::to_string(j.submitted.load()));
        put("jobs/enqueued_first_connect", std::to_string(j.first_connect.load()));
        put("jobs/enqueued_certificate_changed", std::to_string(j.certificate_changed.load()));
        put("jobs/already_known", std::to_string(j.known.load()));
        put("jobs/rejected", std::to_string(j.rejected.load()));
        put("jobs/overflow", std::to_string(j.overflow.load()));
        put("jobs/buffered", std::to_string(j.buffered.load()));
        put("jobs/journaled", std::to_string(j.journaled.load()));
    }
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
    if (client_id == nullptr) return MOSQ_ERR_SUCCESS;
    auto fingerprint = sessions_.remove(event.client, client_id);
    if (fingerprint && ocsp_cache_) ocsp_cache_->set_active(*fingerprint, false);
    return MOSQ_ERR_SUCCESS;
}

int plugin::on_reload(mosquitto_evt_reload&) {
    log(log_level::notice, "devicegate: reload requested (SIGHUP): re-reading CRL files");
    watcher_->request_reload();
    return MOSQ_ERR_SUCCESS;
}

}  // namespace devicegate
