#include "devicegate/crl_watcher.hpp"

#include "devicegate/crl_der.hpp"

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

namespace devicegate {

namespace {

long to_ns(const struct timespec& ts) { return ts.tv_sec * 1'000'000'000L + ts.tv_nsec; }

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string crl_summary(const verified_crl& crl) {
    std::string out = std::string(to_string(crl.issuer)) + " CRL with " + std::to_string(crl.revoked.size()) + " entries";
    out += crl.next_update != 0 ? ", nextUpdate " + std::to_string(crl.next_update) : ", no nextUpdate";
    return out;
}

std::string kind(const std::string& name, bool is_url) { return (is_url ? "url=" : "file=") + name; }

}  // namespace

crl_watcher::crl_watcher(std::shared_ptr<const tenant_trust> trust, std::vector<std::string> files,
                         std::chrono::milliseconds poll_interval, snapshot_slot<crl_set>& slot,
                         broker_queue& queue, logger log, std::vector<std::string> urls, url_options url_opts)
    : trust_(trust),
      state_(std::move(trust), crl_state::options{url_opts.state_dir, url_opts.clock_skew}),
      poll_interval_(poll_interval),
      slot_(slot),
      queue_(queue),
      log_(std::move(log)),
      url_opts_(url_opts),
      loop_("dg-crl-watcher", [this](background_loop& loop) { run(loop); }) {
    for (auto& path : files) {
        source_state s;
        s.name = std::move(path);
        sources_.push_back(std::move(s));
    }
    for (auto& url : urls) {
        source_state s;
        s.name = std::move(url);
        s.is_url = true;
        sources_.push_back(std::move(s));
    }
}

crl_watcher::~crl_watcher() { stop(); }

void crl_watcher::load_initial() {
    for (const auto& line : state_.load_persisted(unix_now())) log_.notice("devicegate: crl state loaded " + line);
    for (auto& source : sources_) {
        if (source.is_url) {
            source.missing_since = unix_now();
            fetch_url(source);
            continue;
        }
        struct stat st {};
        if (::stat(source.name.c_str(), &st) == 0) {
            source.seen = {st.st_dev, st.st_ino, st.st_size, to_ns(st.st_mtim), to_ns(st.st_ctim)};
        }
        // A bad file stops the start, as before; a rollback does not: the newer CRL persisted
        // by an earlier run is in force. Another partition does (docs/security.md, CRL scope):
        // partitioned CRLs are not supported, and the CRL in force does not cover its devices.
        for (const auto& [why, cause] : take(source, read_file(source.name, url_opts_.max_body_bytes)).refused) {
            if (why != crl_refusal::rollback) throw pki_error(cause);
            log_refused(source, cause);
        }
    }
    publish("start");
}

void crl_watcher::add_url(const std::string& url) {
    std::lock_guard lock(mutex_);
    if (learned_urls_.size() < url_opts_.max_urls) learned_urls_.push_back(url);
}

void crl_watcher::start() { loop_.start(); }

void crl_watcher::request_reload() noexcept {
    {
        std::lock_guard lock(mutex_);
        reload_ = true;
    }
    loop_.wake();
}

void crl_watcher::stop() noexcept { loop_.stop(); }

void crl_watcher::take_requests() {
    bool forced = false;
    std::vector<std::string> learned;
    {
        std::lock_guard lock(mutex_);
        forced = reload_;
        reload_ = false;
        learned.swap(learned_urls_);
    }
    for (auto& url : learned) {
        bool known = std::any_of(sources_.begin(), sources_.end(), [&](const auto& s) { return s.name == url; });
        std::size_t urls = std::count_if(sources_.begin(), sources_.end(), [](const auto& s) { return s.is_url; });
        if (known || urls >= url_opts_.max_urls) continue;
        log_.notice("devicegate: crl url learned from a device certificate's CRL Distribution Points: " + url);
        source_state s;
        s.name = url;
        s.is_url = true;
        s.missing_since = unix_now();
        sources_.push_back(std::move(s));
    }
    if (forced) {
        // A reload request re-reads every file and refetches every URL now.
        for (auto& source : sources_) {
            source.seen = {};
            source.next_fetch = {};
        }
        publish_requested_ = true;  // a new snapshot even if every CRL is unchanged
    }
}

void crl_watcher::run(background_loop& loop) {
    while (loop.wait_for(poll_interval_)) {
        take_requests();
        try {
            poll_once();
        } catch (const std::exception& e) {
            log_.error(std::string("devicegate: crl watcher error: ") + e.what());
        }
    }
}

void crl_watcher::poll_once() {
    bool changed = false;
    for (auto& source : sources_) {
        if (source.is_url) {
            if (std::chrono::steady_clock::now() >= source.next_fetch) changed = fetch_url(source) || changed;
        } else {
            changed = poll_file(source) || changed;
        }
    }
    if (changed || std::exchange(publish_requested_, false)) publish("reload");
}

crl_watcher::take_result crl_watcher::take(source_state& source, std::string_view data) {
    // The signatures first: a forged or unsigned body must not cost the memory of decoding it.
    precheck_crl_signatures(data, source.name, *trust_);
    auto crls = parse_crls(data, source.name);
    // One DER CRL (what step-ca serves) is persisted as received; PEM is re-encoded.
    const std::string_view as_received = data.find("-----BEGIN ") == std::string_view::npos ? data : std::string_view();
    const std::int64_t now = unix_now();
    take_result out;
    std::vector<ca_role> delivers;
    bool genuine = false;  // some CRL verified: the content counts as this source's delivery
    for (auto& crl : crls) {
        crl_offer_result r;
        try {
            r = state_.offer(crl.get(), source.name, now, as_received);
        } catch (const pki_error& e) {
            out.refused.emplace_back(crl_refusal::invalid, e.what());
            continue;
        }
        genuine = true;
        if (r.refusal != crl_refusal::none) {
            out.refused.emplace_back(r.refusal, source.name + ": the " + std::string(to_string(r.issuer)) + " CRL is " +
                                                    (r.refusal == crl_refusal::rollback ? "a rollback: " : "refused: ") +
                                                    r.detail);
            continue;
        }
        delivers.push_back(r.issuer);
        out.changed = out.changed || r.changed;
        if (r.changed) {
            log_.notice("devicegate: crl loaded " + kind(source.name, source.is_url) + " " +
                        crl_summary(*state_.current(r.issuer)));
        }
        if (!r.persist_error.empty()) {
            log_.error("devicegate: crl state not persisted: " + r.persist_error +
                       "; a restart could take an older CRL of this CA");
        }
    }
    // A source that delivers genuine CRLs, but no longer the one of a CA it delivered before
    // (another CA's, an older or a future-dated one), leaves that CA's CRL in force, stale.
    if (genuine) {
        for (ca_role role : source.delivers) {
            if (std::find(delivers.begin(), delivers.end(), role) != delivers.end()) continue;
            log_.warning("devicegate: crl source " + kind(source.name, source.is_url) + " no longer delivers the " +
                         std::string(to_string(role)) + "'s CRL; the one in force stays, stale unless a source "
                         "delivers it again within crl_grace");
        }
        out.changed = state_.set_delivered(source.name, delivers, now) || out.changed;
        source.delivers = std::move(delivers);
        if (!source.delivers.empty()) {
            source.delivered = true;
            source.missing_since = 0;
        }
    }
    return out;
}

void crl_watcher::log_refused(source_state& source, const std::string& cause) {
    ++rejected_;
    source.refused = true;
    log_.error("devicegate: crl_rejected " + kind(source.name, source.is_url) + " cause=\"" + log_safe(cause, 400) +
               "\"; " + (source.delivered ? "keeping the last good CRL" : "no CRL from it yet"));
}

void crl_watcher::note_accepted(source_state& source) {
    if (!source.refused) return;
    source.refused = false;
    log_.notice("devicegate: crl source " + kind(source.name, source.is_url) +
                " accepted again (after crl_rejected): its CRLs are in force");
}

bool crl_watcher::poll_file(source_state& file) {
    struct stat st {};
    if (::stat(file.name.c_str(), &st) != 0) {
        if (!file.missing_reported) {
            ++rejected_;
            log_.error("devicegate: crl_rejected file=" + file.name + " cause=\"cannot stat: " + std::strerror(errno) +
                       "\"; keeping the last good CRL");
            file.missing_reported = true;
            file.refused = true;  // put back, even unchanged: "accepted again"
        }
        file.seen = {};
        return false;
    }
    file.missing_reported = false;
    file_stamp stamp{st.st_dev, st.st_ino, st.st_size, to_ns(st.st_mtim), to_ns(st.st_ctim)};
    if (stamp == file.seen) return false;
    file.seen = stamp;
    try {
        auto r = take(file, read_file(file.name, url_opts_.max_body_bytes));
        for (const auto& refused : r.refused) log_refused(file, refused.second);
        if (r.refused.empty()) note_accepted(file);
        return r.changed;
    } catch (const std::exception& e) {
        log_refused(file, e.what());
        ::malloc_trim(0);  // a refused file's parse buffers, not kept as broker RSS
        return false;
    }
}

bool crl_watcher::fetch_url(source_state& url) {
    http_get_options options;
    options.timeout = url_opts_.timeout;
    options.max_body_bytes = url_opts_.max_body_bytes;  // enforced while the body arrives
    if (url.delivered) {
        options.if_none_match = url.etag;
        options.if_modified_since = url.last_modified;
    }
    http_response r = http_.get(url.name, options);
    std::string cause;
    if (!r) {
        cause = "fetch failed: " + r.error;
    } else if (r.status == 304) {
        note_accepted(url);
        url.failing.clear();
        schedule(url, true);
        return false;
    } else if (r.status != 200) {
        cause = "HTTP " + std::to_string(r.status);
    } else {
        try {
            auto taken = take(url, r.body);
            std::string().swap(r.body);
            if (taken.refused.empty()) {
                note_accepted(url);
                url.etag = r.etag;
                url.last_modified = r.last_modified;
                url.failing.clear();
                schedule(url, true);
                return taken.changed;
            }
            for (const auto& refused : taken.refused) cause += (cause.empty() ? "" : "; ") + refused.second;
            if (taken.changed) {  // part of the body taken: log the rest, and publish
                log_refused(url, cause);
                url.failing = cause;
                schedule(url, false);
                return true;
            }
        } catch (const std::exception& e) {
            cause = e.what();
        }
    }
    std::string().swap(r.body);
    // Parsing a refused body allocated memory too: give it back now, not at the next publish.
    ::malloc_trim(0);
    if (url.failing != cause) log_refused(url, cause);  // once per cause, not on every retry
    else ++rejected_;
    url.failing = cause;
    schedule(url, false);
    return false;
}

void crl_watcher::schedule(source_state& url, bool ok) {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    if (!ok) {
        // Exponential backoff from `retry` up to `refresh`: a URL serving a refused (possibly
        // huge) body is not downloaded again every `retry`.
        const unsigned doublings = std::min(url.failures++, 16u);
        url.next_fetch = now + std::min<milliseconds>(url_opts_.retry * (1LL << doublings), url_opts_.refresh);
        return;
    }
    url.failures = 0;
    milliseconds wait = url_opts_.refresh;
    // Refresh ahead of nextUpdate: at two thirds of the CRL's validity at the latest.
    for (ca_role role : url.delivers) {
        const verified_crl* crl = state_.current(role);
        if (crl == nullptr || crl->next_update == 0 || crl->next_update <= crl->this_update) continue;
        const std::int64_t refresh_at = crl->this_update + (crl->next_update - crl->this_update) * 2 / 3;
        const std::int64_t in = refresh_at - unix_now();
        wait = std::min(wait, in > 0 ? milliseconds(in * 1000) : url_opts_.retry);
    }
    url.next_fetch = now + wait;
}

void crl_watcher::publish(const char* why) {
    std::vector<verified_crl> all = state_.in_force();
    std::vector<missing_crl_source> missing = state_.undelivered();
    for (const auto& source : sources_) {
        if (!source.delivered && source.missing_since != 0) missing.push_back({source.name, source.missing_since});
    }
    auto next = std::make_shared<const crl_set>(std::move(all), *trust_, ++generation_, std::move(missing));
    auto prev = slot_.load();
    slot_.store(next);
    log_.info(std::string("devicegate: revocation snapshot published generation=") + std::to_string(next->generation()) +
              " revoked_serials=" + std::to_string(next->revoked_leaves().size()) + " trigger=" + why);
    if (next->chain_revoked()) {
        log_.error("devicegate: tenant chain revoked: " + next->chain_detail() + "; every device is refused");
        if (!prev || !prev->chain_revoked()) {
            kick_request kick;
            kick.everyone = true;
            kick.why = reason::ca_revoked;
            queue_.push_kick(std::move(kick));
        }
    }
    if (prev) {
        auto added = newly_revoked(prev->revoked_leaves(), next->revoked_leaves());
        if (!added.empty()) {
            kick_request kick;
            kick.serials = std::move(added);
            kick.why = reason::revoked_crl;
            queue_.push_kick(std::move(kick));
        }
    }
    retired_ = std::move(prev);
    // Parsing a large CRL allocates ~10x its entries' final size in OpenSSL objects; give
    // the freed memory back to the system instead of keeping it as broker RSS (glibc).
    ::malloc_trim(0);
}

}  // namespace devicegate
