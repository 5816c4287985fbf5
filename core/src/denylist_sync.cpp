#include "devicegate/denylist_sync.hpp"

#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <optional>

namespace devicegate {

denylist_sync::denylist_sync(options opts, denylist_state& state, broker_queue& queue, logger log)
    : opts_(std::move(opts)), state_(state), queue_(queue), log_(std::move(log)) {
    state_.stale_since = static_cast<std::int64_t>(std::time(nullptr));
    if (!state_.list.load()) state_.list.store(std::make_shared<const denylist>());
}

denylist_sync::~denylist_sync() { stop(); }

void denylist_sync::load_cache() {
    if (opts_.cache_file.empty()) return;
    if (::access(opts_.cache_file.c_str(), F_OK) != 0) {
        log_.notice("devicegate: no deny-list cache at " + opts_.cache_file + " yet (first start)");
        return;
    }
    try {
        std::int64_t synced_at = 0;
        auto list = std::make_shared<const denylist>(load_denylist_file(opts_.cache_file, synced_at));
        state_.list.store(list);
        state_.synced_at = synced_at;
        // The copy has been unconfirmed since its last real sync, not since this start: a
        // restart must not begin denylist_grace again (a future time counts as now).
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        state_.stale_since = std::clamp<std::int64_t>(synced_at, 1, now);
        log_.notice("devicegate: denylist loaded from cache file=" + opts_.cache_file + " entries=" +
                    std::to_string(list->size()) + " synced_at=" + std::to_string(synced_at));
    } catch (const std::exception& e) {
        log_.warning(std::string("devicegate: denylist cache not loaded: ") + e.what());
    }
}

void denylist_sync::start() { loop_.start(); }

void denylist_sync::stop() noexcept { loop_.stop(); }

void denylist_sync::run(background_loop& loop) {
    std::chrono::milliseconds backoff{100};
    while (!loop.stopping()) {
        try {
            session(loop);
            return;  // only returns normally when stopping
        } catch (const redis_io_error& e) {
            mark_down(e.what());
        } catch (const redis_data_error& e) {
            mark_down(std::string("bad data from Redis: ") + e.what());
        } catch (const std::exception& e) {
            mark_down(std::string("unexpected error: ") + e.what());
        }
        if (was_up_) backoff = std::chrono::milliseconds(100);  // a fresh outage: retry quickly
        was_up_ = false;
        if (!loop.wait_for(backoff)) return;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
}

void denylist_sync::mark_down(const std::string& cause) {
    if (link_up_.exchange(false) || !down_logged_) {
        ++link_downs_;
        log_.warning("devicegate: redis link down (" + opts_.redis.describe() + "): " + log_safe(cause, 300) +
                     "; serving on the local deny-list copy");
        down_logged_ = true;
    }
    std::int64_t expected = 0;
    state_.stale_since.compare_exchange_strong(expected, static_cast<std::int64_t>(std::time(nullptr)));
}

void denylist_sync::session(background_loop& loop) {
    // Subscribed before the full load, so no change falls between the two.
    revocation_subscription sub(opts_.redis, opts_.model);
    redis_connection cmd(opts_.redis);
    if (!(cmd.address() == sub.address())) {
        // A failover between the two discoveries: the subscription may sit on the old master.
        throw redis_io_error("the master moved while connecting (subscribed at " + sub.address().describe() +
                             ", commands at " + cmd.address().describe() + ")");
    }
    std::optional<sentinel_watch> watch;
    if (cmd.via_sentinel() && opts_.watch_sentinels) watch.emplace(opts_.redis);
    revocation_store store(cmd, opts_.model);
    publish(std::make_shared<const denylist>(full_resync(store)), "resync");
    state_.stale_since = 0;
    link_up_ = true;
    was_up_ = true;
    down_logged_ = false;
    log_.notice("devicegate: redis link up (" + cmd.describe() + "): deny-list synced, " +
                std::to_string(state_.list.load()->size()) + " entries");

    const auto now = [] { return std::chrono::steady_clock::now(); };
    auto next_resync = now() + opts_.resync_interval;
    auto next_role_check = now() + opts_.role_check_interval;
    while (!loop.stopping()) {
        if (now() >= next_resync) {
            // Periodic: also a health check of the command link.
            publish(std::make_shared<const denylist>(full_resync(store)), "periodic resync");
            next_resync = now() + opts_.resync_interval;
        }
        if (now() >= next_role_check) {
            if (cmd.via_sentinel()) {
                cmd.expect_master();  // throws redis_io_error "... reports role slave": reconnect, rediscover
            } else {
                expect_ok(cmd.command({"PING"}).get(), "PING");  // no answer in time: redis_io_error
            }
            next_role_check = now() + opts_.role_check_interval;
        }
        if (watch) {
            if (auto moved = watch->poll(); moved && !(*moved == cmd.address())) {
                throw redis_io_error("a sentinel announced +switch-master to " + moved->describe());
            }
        }
        if (auto payload = sub.next_change(std::chrono::milliseconds(200))) apply_change(store, *payload);
    }
}

void denylist_sync::apply_change(revocation_store& store, std::string_view payload) {
    try {
        auto change = parse_denylist_change(payload);
        auto next = std::make_shared<denylist>(*state_.list.load());
        auto& set = change.serial ? next->serials : next->devices;
        if (change.revoke) set.insert(change.value);
        else set.erase(change.value);
        publish(std::move(next), change.revoke ? "revoke" : "unrevoke");
    } catch (const std::invalid_argument& e) {
        ++malformed_;
        log_.warning(std::string("devicegate: malformed message on ") + opts_.model.revocations_channel() + ": " +
                     e.what() + "; resyncing");
        publish(std::make_shared<const denylist>(full_resync(store)), "resync after a malformed message");
    }
}

denylist denylist_sync::full_resync(revocation_store& store) {
    auto snapshot = store.load();
    for (const auto& bad : snapshot.malformed) {
        ++malformed_;
        log_.warning("devicegate: malformed deny-list entry in " + bad.key + ": \"" + log_safe(bad.value) +
                     "\" is not a hex serial; ignored");
    }
    return std::move(snapshot.list);
}

void denylist_sync::publish(std::shared_ptr<const denylist> next, const char* why) {
    auto prev = state_.list.load();
    auto added = added_entries(prev.get(), *next);
    state_.list.store(next);
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    state_.synced_at = now;
    if (!added.devices.empty() || !added.serials.empty()) {
        log_.info("devicegate: denylist " + std::string(why) + ": " + std::to_string(added.devices.size()) +
                  " devices and " + std::to_string(added.serials.size()) + " serials newly revoked");
        kick_request kick;
        kick.serials = std::move(added.serials);
        kick.device_ids = std::move(added.devices);
        kick.why = reason::revoked_denylist;
        queue_.push_kick(std::move(kick));
    }
    if (!opts_.cache_file.empty()) {
        try {
            save_denylist_file(opts_.cache_file, *next, now);
        } catch (const std::exception& e) {
            log_.warning(std::string("devicegate: cannot write the deny-list cache: ") + e.what());
        }
    }
}

}  // namespace devicegate
