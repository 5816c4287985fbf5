#include "devicegate/crl_watcher.hpp"

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace devicegate {

namespace {

long to_ns(const struct timespec& ts) { return ts.tv_sec * 1'000'000'000L + ts.tv_nsec; }

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string crl_summary(const std::vector<verified_crl>& crls) {
    std::string out;
    for (const auto& crl : crls) {
        if (!out.empty()) out += ", ";
        out += std::string(to_string(crl.issuer)) + " CRL with " + std::to_string(crl.revoked.size()) + " entries";
        out += crl.next_update != 0 ? ", nextUpdate " + std::to_string(crl.next_update) : ", no nextUpdate";
    }
    return out;
}

std::string kind(const std::string& name, bool is_url) { return (is_url ? "url=" : "file=") + name; }

}  // namespace

crl_watcher::crl_watcher(std::shared_ptr<const tenant_trust> trust, std::vector<std::string> files,
                         std::chrono::milliseconds poll_interval, snapshot_slot<crl_set>& slot,
                         broker_queue& queue, logger log, std::vector<std::string> urls, url_options url_opts)
    : trust_(std::move(trust)),
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
        source.last_good = load_crl_file(source.name, *trust_);
        log_.notice("devicegate: crl loaded file=" + source.name + " " + crl_summary(source.last_good));
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
    if (changed) publish("reload");
}

bool crl_watcher::accept(source_state& source, std::vector<verified_crl> loaded) {
    for (const auto& fresh : loaded) {
        for (const auto& old : source.last_good) {
            if (old.issuer == fresh.issuer && fresh.this_update < old.this_update) {
                throw pki_error(source.name + ": the new " + std::string(to_string(fresh.issuer)) +
                                " CRL is older than the one in force (thisUpdate " + std::to_string(fresh.this_update) +
                                " < " + std::to_string(old.this_update) + ")");
            }
        }
    }
    log_.notice("devicegate: crl loaded " + kind(source.name, source.is_url) + " " + crl_summary(loaded));
    source.last_good = std::move(loaded);
    source.missing_since = 0;
    return true;
}

bool crl_watcher::poll_file(source_state& file) {
    struct stat st {};
    if (::stat(file.name.c_str(), &st) != 0) {
        if (!file.missing_reported) {
            ++rejected_;
            log_.error("devicegate: crl_rejected file=" + file.name + " cause=\"cannot stat: " + std::strerror(errno) +
                       "\"; keeping the last good CRL");
            file.missing_reported = true;
        }
        file.seen = {};
        return false;
    }
    file.missing_reported = false;
    file_stamp stamp{st.st_dev, st.st_ino, st.st_size, to_ns(st.st_mtim), to_ns(st.st_ctim)};
    if (stamp == file.seen) return false;
    file.seen = stamp;
    try {
        return accept(file, load_crl_file(file.name, *trust_));
    } catch (const std::exception& e) {
        ++rejected_;
        log_.error("devicegate: crl_rejected file=" + file.name + " cause=\"" + log_safe(e.what(), 400) +
                   "\"; keeping the last good CRL");
        return false;
    }
}

bool crl_watcher::fetch_url(source_state& url) {
    http_get_options options;
    options.timeout = url_opts_.timeout;
    options.max_body_bytes = max_crl_file_bytes;
    if (!url.last_good.empty()) {
        options.if_none_match = url.etag;
        options.if_modified_since = url.last_modified;
    }
    http_response r = http_.get(url.name, options);
    std::string cause;
    if (!r) {
        cause = "fetch failed: " + r.error;
    } else if (r.status == 304) {
        url.failing.clear();
        schedule(url, true);
        return false;
    } else if (r.status != 200) {
        cause = "HTTP " + std::to_string(r.status);
    } else {
        try {
            bool changed = accept(url, [&] {
                auto crls = parse_crls(r.body, url.name);
                std::vector<verified_crl> out;
                for (auto& crl : crls) out.push_back(verify_crl(crl.get(), *trust_, url.name));
                return out;
            }());
            url.etag = r.etag;
            url.last_modified = r.last_modified;
            url.failing.clear();
            schedule(url, true);
            return changed;
        } catch (const std::exception& e) {
            cause = e.what();
        }
    }
    ++rejected_;
    if (url.failing != cause) {  // once per cause, not on every retry
        log_.error("devicegate: crl_rejected url=" + url.name + " cause=\"" + log_safe(cause, 400) + "\"; " +
                   (url.last_good.empty() ? "no CRL from it yet" : "keeping the last good CRL"));
    }
    url.failing = cause;
    schedule(url, false);
    return false;
}

void crl_watcher::schedule(source_state& url, bool ok) {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    milliseconds wait = ok ? url_opts_.refresh : std::min(url_opts_.retry, url_opts_.refresh);
    // Refresh ahead of nextUpdate: at two thirds of the CRL's validity at the latest.
    for (const auto& crl : url.last_good) {
        if (crl.next_update == 0 || crl.next_update <= crl.this_update) continue;
        const std::int64_t refresh_at = crl.this_update + (crl.next_update - crl.this_update) * 2 / 3;
        const std::int64_t in = refresh_at - unix_now();
        wait = std::min(wait, in > 0 ? milliseconds(in * 1000) : url_opts_.retry);
    }
    url.next_fetch = now + wait;
}

void crl_watcher::publish(const char* why) {
    std::vector<verified_crl> all;
    std::vector<missing_crl_source> missing;
    for (const auto& source : sources_) {
        all.insert(all.end(), source.last_good.begin(), source.last_good.end());
        if (source.last_good.empty() && source.missing_since != 0) missing.push_back({source.name, source.missing_since});
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
