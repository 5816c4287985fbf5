#pragma once
// Keeps the local deny-list copy in step with Redis on a background thread: SUBSCRIBE to the
// revocations channel, then a full resync (on every (re)connect and periodically), applying
// each change within milliseconds and asking the broker thread to kick revoked sessions.
// The broker never waits on Redis: it reads the last published copy.
#include "devicegate/background_loop.hpp"
#include "devicegate/broker_queue.hpp"
#include "devicegate/denylist.hpp"
#include "devicegate/log.hpp"
#include "devicegate/redis.hpp"
#include "devicegate/redis_model.hpp"
#include "devicegate/revocation_store.hpp"

#include <chrono>
#include <string>

namespace devicegate {

class denylist_sync {
public:
    struct options {
        redis_options redis;
        redis_model model;
        std::chrono::milliseconds resync_interval{std::chrono::seconds(60)};
        std::string cache_file;  // "" = no local file
        /// How often the command connection is checked: ROLE with Sentinel URLs (a master that
        /// Sentinel demoted, by SENTINEL FAILOVER or back after a partition, keeps its
        /// subscribers connected: this notices it and reconnects to the new one), PING
        /// otherwise (a hung server keeps the subscription's socket open and silent: without a
        /// check the link looked up until the next resync, up to resync_interval late).
        std::chrono::milliseconds role_check_interval{1000};
        /// Sentinel URLs only: also subscribe to the sentinels' +switch-master announcements
        /// (a failover seen by the sentinels while the old master still looks fine to us).
        bool watch_sentinels = true;
    };

    denylist_sync(options opts, denylist_state& state, broker_queue& queue, logger log);
    ~denylist_sync();
    denylist_sync(const denylist_sync&) = delete;
    denylist_sync& operator=(const denylist_sync&) = delete;

    /// Loads the local cache file, if any (start-up). The copy counts as stale since the sync
    /// time recorded in the file, so denylist_grace runs on across broker restarts.
    void load_cache();
    void start();
    void stop() noexcept;

    bool link_up() const noexcept { return link_up_.load(); }
    std::uint64_t malformed_entries() const noexcept { return malformed_.load(); }
    std::uint64_t link_downs() const noexcept { return link_downs_.load(); }

private:
    void run(background_loop& loop);
    void session(background_loop& loop);  // one connected period; throws on link loss
    denylist full_resync(revocation_store& store);
    void apply_change(revocation_store& store, std::string_view payload);
    void publish(std::shared_ptr<const denylist> next, const char* why);
    void mark_down(const std::string& cause);

    options opts_;
    denylist_state& state_;
    broker_queue& queue_;
    logger log_;
    std::atomic<bool> link_up_{false};
    std::atomic<std::uint64_t> malformed_{0};
    std::atomic<std::uint64_t> link_downs_{0};
    bool down_logged_ = false;
    bool was_up_ = false;  // the last session got as far as a synced link
    background_loop loop_{"dg-denylist", [this](background_loop& loop) { run(loop); }};  // last: stops first
};

}  // namespace devicegate
