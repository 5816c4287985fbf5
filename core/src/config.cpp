#include "devicegate/config.hpp"

#include <charconv>
#include <limits>

namespace devicegate {

namespace {

constexpr const char* duration_form = "a duration such as 500ms, 30s, 5m or 24h";

std::chrono::milliseconds duration_option(const std::string& name, const std::string& value,
                                          std::chrono::milliseconds min, std::chrono::milliseconds max) {
    std::chrono::milliseconds d{};
    try {
        d = parse_duration(value);
    } catch (const std::invalid_argument&) {
        throw config_error(name, "\"" + value + "\" is not " + duration_form);
    }
    if (d < min || d > max) {
        throw config_error(name, "\"" + value + "\" is out of range; expected between " + std::to_string(min.count()) +
                                     "ms and " + std::to_string(max.count()) + "ms");
    }
    return d;
}

std::size_t count_option(const std::string& name, const std::string& value, std::size_t min, std::size_t max) {
    std::size_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc{} || end != value.data() + value.size() || n < min || n > max) {
        throw config_error(name, "\"" + value + "\" is not an integer between " + std::to_string(min) + " and " +
                                     std::to_string(max));
    }
    return n;
}

bool on_off_option(const std::string& name, const std::string& value) {
    if (value == "on") return true;
    if (value == "off") return false;
    throw config_error(name, "\"" + value + "\" is not on or off");
}

std::string url_option(const std::string& name, const std::string& value) {
    if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0) {
        throw config_error(name, "\"" + value + "\" is not an http:// or https:// URL");
    }
    return value;
}

stale_policy policy_option(const std::string& name, const std::string& value) {
    if (value == "deny") return stale_policy::deny;
    if (value == "allow") return stale_policy::allow;
    throw config_error(name, "\"" + value + "\" is not deny or allow");
}

void require_path(const std::string& name, const std::string& value) {
    if (value.empty() || value.front() != '/') {
        throw config_error(name, "\"" + value + "\" is not an absolute file path");
    }
}

}  // namespace

std::chrono::milliseconds parse_duration(const std::string& text) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end == text.data()) throw std::invalid_argument("not a duration");
    std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    std::uint64_t factor = 0;
    if (unit == "ms") factor = 1;
    else if (unit == "s") factor = 1000;
    else if (unit == "m") factor = 60'000;
    else if (unit == "h") factor = 3'600'000;
    else throw std::invalid_argument("not a duration");
    if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / factor) {
        throw std::invalid_argument("duration overflows");
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(n * factor));
}

plugin_config parse_plugin_config(const option_list& options) {
    using namespace std::chrono;
    plugin_config config;
    bool custom_acl = false;
    std::vector<acl_rule> client_rules;
    for (const auto& [name, value] : options) {
        if (name == "tenant_ca_file") {
            require_path(name, value);
            config.tenant_ca_file = value;
        } else if (name == "ica_file") {
            require_path(name, value);
            config.ica_file = value;
        } else if (name == "root_ca_file") {
            require_path(name, value);
            config.root_ca_file = value;
        } else if (name == "crl_file") {
            require_path(name, value);
            config.crl_files.push_back(value);
        } else if (name == "crl_url") {
            config.crl_urls.push_back(url_option(name, value));
        } else if (name == "crl_distribution_points") {
            config.crl_distribution_points = on_off_option(name, value);
        } else if (name == "crl_refresh") {
            config.crl_refresh = duration_option(name, value, seconds(1), hours(24));
        } else if (name == "crl_retry") {
            config.crl_retry = duration_option(name, value, milliseconds(100), hours(24));
        } else if (name == "crl_max_bytes") {
            config.crl_max_bytes = count_option(name, value, 1024, std::size_t{1} << 31);
        } else if (name == "crl_fetch_timeout") {
            config.crl_fetch_timeout = duration_option(name, value, milliseconds(100), seconds(60));
        } else if (name == "ocsp") {
            if (value == "off") config.ocsp = ocsp_mode::off;
            else if (value == "soft") config.ocsp = ocsp_mode::soft;
            else if (value == "hard") config.ocsp = ocsp_mode::hard;
            else throw config_error(name, "\"" + value + "\" is not off, soft or hard");
        } else if (name == "ocsp_responder_url") {
            config.ocsp_responder_url = url_option(name, value);
        } else if (name == "ocsp_nonce") {
            config.ocsp_nonce = on_off_option(name, value);
        } else if (name == "ocsp_max_ttl") {
            config.ocsp_max_ttl = duration_cast<seconds>(duration_option(name, value, seconds(1), hours(24 * 7)));
        } else if (name == "ocsp_cache_size") {
            config.ocsp_cache_size = count_option(name, value, 1, 10'000'000);
        } else if (name == "ocsp_timeout") {
            config.ocsp_timeout = duration_option(name, value, milliseconds(100), seconds(60));
        } else if (name == "ocsp_sub_ca") {
            config.ocsp_sub_ca = on_off_option(name, value);
        } else if (name == "ocsp_sub_ca_responder_url") {
            config.ocsp_sub_ca_responder_url = url_option(name, value);
        } else if (name == "ocsp_refresh_ahead") {
            config.ocsp_refresh_ahead = duration_cast<seconds>(duration_option(name, value, seconds(0), hours(24)));
        } else if (name == "crl_poll_interval") {
            config.crl_poll_interval = duration_option(name, value, milliseconds(100), hours(1));
        } else if (name == "crl_grace") {
            config.crl_grace = duration_cast<seconds>(duration_option(name, value, milliseconds(0), hours(24 * 30)));
        } else if (name == "crl_stale_policy") {
            config.crl_stale_policy = policy_option(name, value);
        } else if (name == "clock_skew") {
            config.clock_skew = duration_cast<seconds>(duration_option(name, value, milliseconds(0), hours(1)));
        } else if (name == "acl_client_pattern") {
            try {
                client_rules.push_back(parse_client_acl_rule(value));
            } catch (const std::invalid_argument& e) {
                throw config_error(name, "\"" + value + "\": " + e.what());
            }
        } else if (name == "redis_url") {
            try {
                config.redis = redis_options::parse_url(value);
            } catch (const std::invalid_argument& e) {
                throw config_error(name, e.what());  // the message never repeats the password
            }
        } else if (name == "redis_prefix") {
            if (value.empty() || value.find_first_of(" \t") != std::string::npos) {
                throw config_error(name, "\"" + value + "\" is not a key prefix such as devicegate:");
            }
            config.redis_prefix = value;
        } else if (name == "denylist_grace") {
            config.denylist_grace = duration_cast<seconds>(duration_option(name, value, milliseconds(0), hours(24 * 30)));
        } else if (name == "denylist_stale_policy") {
            config.denylist_stale_policy = policy_option(name, value);
        } else if (name == "denylist_resync_interval") {
            config.denylist_resync_interval = duration_option(name, value, seconds(1), hours(24));
        } else if (name == "first_connect_jobs") {
            config.first_connect_jobs = on_off_option(name, value);
        } else if (name == "job_memory_limit") {
            config.job_memory_limit = count_option(name, value, 0, 10'000'000);
        } else if (name == "job_journal_max_bytes") {
            config.job_journal_max_bytes = count_option(name, value, 4096, std::size_t{1} << 40);
        } else if (name == "state_dir") {
            require_path(name, value);
            config.state_dir = value;
        } else if (name == "broker_id") {
            if (value.empty() || value.size() > 128 || value.find_first_of(" \t") != std::string::npos) {
                throw config_error(name, "\"" + value + "\" is not a broker id (1-128 characters, no whitespace)");
            }
            config.broker_id = value;
        } else if (name == "stats_interval") {
            config.stats_interval = duration_option(name, value, milliseconds(0), hours(1));
        } else if (name == "acl_pattern") {
            if (!custom_acl) config.acl_rules.clear();
            custom_acl = true;
            try {
                config.acl_rules.push_back(parse_acl_rule(value));
            } catch (const std::invalid_argument& e) {
                throw config_error(name, "\"" + value + "\": " + e.what());
            }
        } else if (name == "verify_cache_size") {
            config.verify_cache_size = count_option(name, value, 1, 10'000'000);
        } else if (name == "listener_check") {
            if (value == "enforce") config.listener_check = listener_check_mode::enforce;
            else if (value == "warn") config.listener_check = listener_check_mode::warn;
            else if (value == "off") config.listener_check = listener_check_mode::off;
            else throw config_error(name, "\"" + value + "\" is not enforce, warn or off");
        } else {
            throw config_error(name, "unknown option; known options are tenant_ca_file, ica_file, root_ca_file, "
                                     "crl_file, crl_url, crl_distribution_points, crl_refresh, crl_fetch_timeout, "
                                     "crl_max_bytes, crl_retry, ocsp, ocsp_responder_url, ocsp_nonce, ocsp_max_ttl, ocsp_cache_size, "
                                     "ocsp_timeout, ocsp_refresh_ahead, ocsp_sub_ca, ocsp_sub_ca_responder_url, "
                                     "crl_poll_interval, crl_grace, crl_stale_policy, clock_skew, "
                                     "acl_pattern, acl_client_pattern, verify_cache_size, listener_check, redis_url, "
                                     "redis_prefix, denylist_grace, denylist_stale_policy, denylist_resync_interval, "
                                     "first_connect_jobs, job_memory_limit, job_journal_max_bytes, state_dir, "
                                     "broker_id, stats_interval");
        }
    }
    config.acl_rules.insert(config.acl_rules.end(), client_rules.begin(), client_rules.end());
    if (config.tenant_ca_file.empty()) throw config_error("tenant_ca_file", "missing; expected the tenant Sub-CA certificate file");
    if (config.ica_file.empty()) throw config_error("ica_file", "missing; expected the provider ICA certificate file");
    if (config.root_ca_file.empty()) throw config_error("root_ca_file", "missing; expected the provider Root certificate file");
    if (config.crl_files.empty() && config.crl_urls.empty()) {
        throw config_error("crl_file", "missing; expected at least one CRL file (PEM or DER) or plugin_opt_crl_url");
    }
    return config;
}

}  // namespace devicegate
