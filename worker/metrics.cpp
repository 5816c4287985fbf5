#include "metrics.hpp"

#include <sstream>

namespace devicegate::worker {

const char* to_string(target t) noexcept { return t == target::thingsboard ? "thingsboard" : "hawkbit"; }

const char* to_string(error_kind k) noexcept {
    switch (k) {
        case error_kind::transport: return "transport";
        case error_kind::http_429: return "http_429";
        case error_kind::http_4xx: return "http_4xx";
        case error_kind::http_5xx: return "http_5xx";
        case error_kind::auth: return "auth";
    }
    return "unknown";
}

const char* to_string(dead_reason r) noexcept {
    switch (r) {
        case dead_reason::exhausted: return "exhausted";
        case dead_reason::permanent: return "permanent";
        case dead_reason::malformed: return "malformed";
        case dead_reason::poison: return "poison";
        case dead_reason::untrusted: return "untrusted";
        case dead_reason::not_revoked: return "not_revoked";
        case dead_reason::quota: return "quota";
    }
    return "unknown";
}

void worker_metrics::observe_registration(std::chrono::microseconds took) {
    const double seconds = static_cast<double>(took.count()) / 1e6;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
        if (seconds <= buckets[i]) ++bucket_counts_[i];
    }
    ++duration_count_;
    duration_sum_us_ += static_cast<std::uint64_t>(took.count());
}

std::string worker_metrics::render() const {
    std::ostringstream o;
    auto simple = [&](const char* name, const char* type, const char* help, auto value) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n" << name << " " << value << "\n";
    };
    simple("devicegate_worker_jobs_done_total", "counter", "Jobs whose device is registered in ThingsBoard and hawkBit.",
           jobs_done.load());
    simple("devicegate_worker_jobs_decommissioned_total", "counter",
           "Decommission jobs carried out (removed from both targets, or already gone).", jobs_decommissioned.load());
    simple("devicegate_worker_jobs_superseded_total", "counter",
           "Jobs skipped because the device already presents a newer certificate.", jobs_superseded.load());
    simple("devicegate_worker_jobs_failed_total", "counter", "Job attempts that failed.", attempts_failed.load());
    simple("devicegate_worker_jobs_retried_total", "counter", "Job attempts scheduled again after a backoff.",
           jobs_retried.load());
    simple("devicegate_worker_jobs_reclaimed_total", "counter", "Jobs taken over from an idle (dead) consumer.",
           jobs_reclaimed.load());
    simple("devicegate_worker_jobs_requeued_total", "counter", "Jobs handed back to the stream at shutdown.",
           jobs_requeued.load());
    o << "# HELP devicegate_worker_jobs_dead_total Jobs moved to the dead-letter stream, by reason.\n"
         "# TYPE devicegate_worker_jobs_dead_total counter\n";
    for (auto r : {dead_reason::exhausted, dead_reason::permanent, dead_reason::malformed, dead_reason::poison,
                   dead_reason::untrusted, dead_reason::not_revoked, dead_reason::quota}) {
        o << "devicegate_worker_jobs_dead_total{reason=\"" << to_string(r) << "\"} "
          << jobs_dead[static_cast<std::size_t>(r)].load() << "\n";
    }
    o << "# HELP devicegate_worker_target_errors_total Failed calls to ThingsBoard and hawkBit, by kind.\n"
         "# TYPE devicegate_worker_target_errors_total counter\n";
    for (auto t : {target::thingsboard, target::hawkbit}) {
        for (auto k : {error_kind::transport, error_kind::http_429, error_kind::http_4xx, error_kind::http_5xx,
                       error_kind::auth}) {
            o << "devicegate_worker_target_errors_total{target=\"" << to_string(t) << "\",kind=\"" << to_string(k)
              << "\"} " << target_errors[static_cast<std::size_t>(t)][static_cast<std::size_t>(k)].load() << "\n";
        }
    }
    o << "# HELP devicegate_worker_created_total Devices (ThingsBoard) and targets (hawkBit) this worker created.\n"
         "# TYPE devicegate_worker_created_total counter\n";
    for (auto t : {target::thingsboard, target::hawkbit}) {
        o << "devicegate_worker_created_total{target=\"" << to_string(t) << "\"} "
          << created[static_cast<std::size_t>(t)].load() << "\n";
    }
    simple("devicegate_worker_thingsboard_credentials_updated_total", "counter",
           "ThingsBoard X.509 credentials replaced with a device's new certificate.", credentials_updated.load());
    simple("devicegate_worker_thingsboard_logins_total", "counter", "ThingsBoard logins.", thingsboard_logins.load());
    simple("devicegate_worker_thingsboard_token_refreshes_total", "counter", "ThingsBoard JWT refreshes.",
           thingsboard_refreshes.load());
    simple("devicegate_worker_rule_engine_unsupported_total", "counter",
           "Rule Engine notifications skipped: ThingsBoard answered 404 (older than 3.8).",
           rule_engine_unsupported.load());
    simple("devicegate_worker_rule_engine_unanswered_total", "counter",
           "Rule Engine messages answered 408 (queued; no reply node in the rule chain).",
           rule_engine_unanswered.load());
    simple("devicegate_worker_thingsboard_attribute_writes_total", "counter",
           "Server-scope attribute writes (the first-connect and renewal notification).", attribute_writes.load());
    simple("devicegate_worker_thingsboard_credentials_conflicts_total", "counter",
           "Credentials saves refused with 409 errorCode 35 (stale version), read again and retried.",
           credentials_version_conflicts.load());
    simple("devicegate_worker_login_refusals_total", "counter",
           "Refused logins (ThingsBoard /api/auth/login 401, hawkBit 401): at most one per login interval.",
           login_refusals.load());
    auto gauge_by_target = [&](const char* name, const char* help, const std::array<std::atomic<int>, 2>& values) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " gauge\n";
        for (auto t : {target::thingsboard, target::hawkbit}) {
            o << name << "{target=\"" << to_string(t) << "\"} " << values[static_cast<std::size_t>(t)].load() << "\n";
        }
    };
    gauge_by_target("devicegate_worker_auth_paused", "1 while consumption is paused because the target refused the login.",
                    auth_paused);
    simple("devicegate_worker_setup_missing_total", "counter",
           "Lookups of a configured name (device profile, customer, target type) the target does not have.",
           setup_missing.load());
    gauge_by_target("devicegate_worker_setup_paused",
                    "1 while consumption is paused because a configured name (profile, customer, target type) is missing.",
                    setup_paused);
    simple("devicegate_worker_thingsboard_customer_assignments_total", "counter",
           "Devices assigned to thingsboard_customer.", thingsboard_customer_assignments.load());
    simple("devicegate_worker_hawkbit_metadata_writes_total", "counter",
           "hawkBit target metadata entries created or updated.", hawkbit_metadata_writes.load());
    simple("devicegate_worker_thingsboard_credentials_revoked_total", "counter",
           "Keep-mode decommissions: X.509 credentials replaced by an unknown access token.",
           thingsboard_credentials_revoked.load());
    simple("devicegate_worker_hawkbit_actions_canceled_total", "counter",
           "Keep-mode decommissions: open hawkBit actions canceled.", hawkbit_actions_canceled.load());
    simple("devicegate_worker_jobs_in_flight", "gauge", "Jobs being processed now.", in_flight.load());
    simple("devicegate_worker_redis_up", "gauge", "1 while the worker's Redis connections work.", redis_up.load());
    o << "# HELP devicegate_worker_registration_seconds Time from a job's first attempt to its registration.\n"
         "# TYPE devicegate_worker_registration_seconds histogram\n";
    for (std::size_t i = 0; i < buckets.size(); ++i) {
        o << "devicegate_worker_registration_seconds_bucket{le=\"" << buckets[i] << "\"} " << bucket_counts_[i].load()
          << "\n";
    }
    const auto n = duration_count_.load();
    o << "devicegate_worker_registration_seconds_bucket{le=\"+Inf\"} " << n << "\n"
      << "devicegate_worker_registration_seconds_sum " << static_cast<double>(duration_sum_us_.load()) / 1e6 << "\n"
      << "devicegate_worker_registration_seconds_count " << n << "\n";
    return o.str();
}

}  // namespace devicegate::worker
