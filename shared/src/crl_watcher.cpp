#include "devicegate/crl_watcher.hpp"

#include <malloc.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace devicegate {

namespace {

long to_ns(const struct timespec& ts) { return ts.tv_sec * 1'000'000'000L + ts.tv_nsec; }

std::string crl_summary(const std::vector<verified_crl>& crls) {
    std::string out;
    for (const auto& crl : crls) {
        if (!out.empty()) out += ", ";
        out += std::string(to_string(crl.issuer)) + " CRL with " + std::to_string(crl.revoked.size()) + " entries";
        out += crl.next_update != 0 ? ", nextUpdate " + std::to_string(crl.next_update) : ", no nextUpdate";
    }
    return out;
}

}  // namespace

crl_watcher::crl_watcher(std::shared_ptr<const tenant_trust> trust, std::vector<std::string> files,
                         std::chrono::milliseconds poll_interval, snapshot_slot<revocation_snapshot>& slot,
                         broker_queue& queue, logger log)
    : trust_(std::move(trust)), poll_interval_(poll_interval), slot_(slot), queue_(queue), log_(std::move(log)) {
    for (auto& path : files) files_.push_back(file_state{std::move(path), {}, false, {}});
}

crl_watcher::~crl_watcher() { stop(); }

void crl_watcher::load_initial() {
    for (auto& file : files_) {
        struct stat st {};
        if (::stat(file.path.c_str(), &st) == 0) {
            file.seen = {st.st_dev, st.st_ino, st.st_size, to_ns(st.st_mtim), to_ns(st.st_ctim)};
        }
        file.last_good = load_crl_file(file.path, *trust_);
        log_.notice("devicegate: crl loaded file=" + file.path + " " + crl_summary(file.last_good));
    }
    publish("start");
}

void crl_watcher::start() { thread_ = std::thread([this] { run(); }); }

void crl_watcher::request_reload() noexcept {
    {
        std::lock_guard lock(mutex_);
        reload_ = true;
    }
    wake_.notify_one();
}

void crl_watcher::stop() noexcept {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
}

void crl_watcher::run() {
    for (;;) {
        bool forced = false;
        {
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, poll_interval_, [this] { return stop_ || reload_; });
            if (stop_) return;
            forced = reload_;
            reload_ = false;
        }
        if (forced) {
            // A reload request re-reads every file even if its stamp did not change.
            for (auto& file : files_) file.seen = {};
        }
        try {
            poll_once();
        } catch (const std::exception& e) {
            log_.error(std::string("devicegate: crl watcher error: ") + e.what());
        }
    }
}

void crl_watcher::poll_once() {
    bool changed = false;
    for (auto& file : files_) {
        struct stat st {};
        if (::stat(file.path.c_str(), &st) != 0) {
            if (!file.missing_reported) {
                log_.error("devicegate: crl_rejected file=" + file.path + " cause=\"cannot stat: " +
                           std::strerror(errno) + "\"; keeping the last good CRL");
                file.missing_reported = true;
            }
            file.seen = {};
            continue;
        }
        file.missing_reported = false;
        file_stamp stamp{st.st_dev, st.st_ino, st.st_size, to_ns(st.st_mtim), to_ns(st.st_ctim)};
        if (stamp == file.seen) continue;
        file.seen = stamp;
        std::vector<verified_crl> loaded;
        try {
            loaded = load_crl_file(file.path, *trust_);
            for (const auto& fresh : loaded) {
                for (const auto& old : file.last_good) {
                    if (old.issuer == fresh.issuer && fresh.this_update < old.this_update) {
                        throw pki_error(file.path + ": the new " + std::string(to_string(fresh.issuer)) +
                                        " CRL is older than the one in force (thisUpdate " +
                                        std::to_string(fresh.this_update) + " < " + std::to_string(old.this_update) +
                                        ")");
                    }
                }
            }
        } catch (const std::exception& e) {
            log_.error("devicegate: crl_rejected file=" + file.path + " cause=\"" + log_safe(e.what(), 400) +
                       "\"; keeping the last good CRL");
            continue;
        }
        log_.notice("devicegate: crl loaded file=" + file.path + " " + crl_summary(loaded));
        file.last_good = std::move(loaded);
        changed = true;
    }
    if (changed) publish("reload");
}

void crl_watcher::publish(const char* why) {
    std::vector<verified_crl> all;
    for (const auto& file : files_) all.insert(all.end(), file.last_good.begin(), file.last_good.end());
    auto next = std::make_shared<const revocation_snapshot>(std::move(all), *trust_, ++generation_);
    auto prev = slot_.load();
    slot_.store(next);
    log_.info(std::string("devicegate: revocation snapshot published generation=") + std::to_string(next->generation()) +
              " revoked_serials=" + std::to_string(next->revoked_leaves().size()) + " trigger=" + why);
    if (next->chain_revoked()) {
        log_.error("devicegate: tenant chain revoked: " + next->chain_detail() + "; every device is refused");
        if (!prev || !prev->chain_revoked()) {
            kick_request kick;
            kick.everyone = true;
            kick.why = "ca_revoked";
            queue_.push_kick(std::move(kick));
        }
    }
    if (prev) {
        auto added = newly_revoked(prev->revoked_leaves(), next->revoked_leaves());
        if (!added.empty()) {
            kick_request kick;
            kick.serials = std::move(added);
            kick.why = "revoked_crl";
            queue_.push_kick(std::move(kick));
        }
    }
    retired_ = std::move(prev);
    // Parsing a large CRL allocates ~10x its entries' final size in OpenSSL objects; give
    // the freed memory back to the system instead of keeping it as broker RSS (glibc).
    ::malloc_trim(0);
}

}  // namespace devicegate
