#pragma once
// Background reloading of the CRLs: polls the files and fetches the URLs (conditional GETs,
// refreshed ahead of nextUpdate; everything at once on request, e.g. SIGHUP), verifies each
// CRL against the tenant chain, keeps the last good CRLs of a source whose new content is bad
// or unreachable, publishes a new revocation snapshot and asks for the newly revoked devices
// to be kicked.
#include "devicegate/background_loop.hpp"
#include "devicegate/broker_queue.hpp"
#include "devicegate/config.hpp"
#include "devicegate/crl_state.hpp"
#include "devicegate/http.hpp"
#include "devicegate/log.hpp"
#include "devicegate/crl_set.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace devicegate {

struct crl_url_options {
    std::chrono::milliseconds refresh{std::chrono::minutes(15)};  // at the latest
    std::chrono::milliseconds timeout{std::chrono::seconds(10)};
    std::chrono::milliseconds retry{std::chrono::seconds(30)};    // after a failed fetch, doubling up to refresh
    std::size_t max_urls = 16;                                    // including learned ones
    // A body larger than this is refused while it downloads (plugin_opt_crl_max_bytes).
    std::size_t max_body_bytes = default_crl_max_bytes;
    // Where the newest CRL per CA is persisted ("" = nowhere), and how far thisUpdate may be
    // ahead of our clock. Not URL-specific: they apply to every source.
    std::string state_dir;
    std::chrono::seconds clock_skew{60};
};

class crl_watcher {
public:
    using url_options = crl_url_options;

    crl_watcher(std::shared_ptr<const tenant_trust> trust, std::vector<std::string> files,
                std::chrono::milliseconds poll_interval, snapshot_slot<crl_set>& slot,
                broker_queue& queue, logger log, std::vector<std::string> urls = {}, url_options url_opts = {});
    ~crl_watcher();
    crl_watcher(const crl_watcher&) = delete;
    crl_watcher& operator=(const crl_watcher&) = delete;

    /// Start-up: loads every file synchronously and publishes the first snapshot. Throws
    /// pki_error naming the file and cause (the broker refuses to start without its CRLs).
    /// URLs are fetched once too; one that fails is logged and counts as a CRL missing since
    /// start (crl_grace, then crl_stale_policy), so a CA outage does not stop the broker.
    void load_initial();
    /// A CRL URL learned from a device certificate's CRL Distribution Points; thread-safe,
    /// no I/O (the watcher thread fetches it). Ignored beyond url_options::max_urls.
    void add_url(const std::string& url);
    void start();
    /// Wakes the thread to re-read the files now; cheap and safe on the broker thread.
    void request_reload() noexcept;
    void stop() noexcept;

    /// One polling pass (what the thread runs); public for tests.
    void poll_once();

    /// CRL files or URLs refused (unreadable, garbage, foreign, forged, older, HTTP errors).
    std::uint64_t rejected() const noexcept { return rejected_.load(); }

private:
    struct file_stamp {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = -1;
        long mtime_ns = 0;
        long ctime_ns = 0;
        bool operator==(const file_stamp&) const = default;
    };
    struct source_state {
        std::string name;                 // file path or URL
        bool is_url = false;
        file_stamp seen;                  // files: the content last tried (good or bad)
        bool missing_reported = false;
        std::string etag, last_modified;  // URLs: for conditional requests
        std::chrono::steady_clock::time_point next_fetch{};
        std::string failing;              // URLs: the cause last logged ("" = fetching fine)
        std::int64_t missing_since = 0;   // no good CRL from this source since then (0: has one)
        std::vector<ca_role> delivers;    // the CAs whose CRL in force this source delivered last
        bool delivered = false;           // has delivered a CRL taken into force (or identical to it)
        unsigned failures = 0;            // URLs: consecutive failed fetches, for the backoff
        bool refused = false;             // crl_rejected was logged since it last delivered a good CRL
    };
    // The outcome of offering a source's content to the per-CA state.
    struct take_result {
        bool changed = false;
        std::vector<std::pair<crl_refusal, std::string>> refused;
    };

    void run(background_loop& loop);
    void take_requests();
    void publish(const char* why);
    bool poll_file(source_state& file);
    bool fetch_url(source_state& url);
    take_result take(source_state& source, std::string_view data);
    void log_refused(source_state& source, const std::string& cause);
    /// The source delivered acceptable content after a crl_rejected: says so once, so that an
    /// operator who put a good file back sees it taken (a content identical to the CRL in
    /// force changes nothing and was logged by nothing else).
    void note_accepted(source_state& source);
    void schedule(source_state& url, bool ok);

    std::shared_ptr<const tenant_trust> trust_;
    crl_state state_;
    std::vector<source_state> sources_;
    std::chrono::milliseconds poll_interval_;
    snapshot_slot<crl_set>& slot_;
    broker_queue& queue_;
    logger log_;
    url_options url_opts_;
    http_client http_;
    std::vector<std::string> learned_urls_;  // guarded by mutex_
    std::uint64_t generation_ = 0;
    bool publish_requested_ = false;  // watcher thread only
    std::atomic<std::uint64_t> rejected_{0};
    // The snapshot replaced last: held until the next publish so that its (possibly tens of
    // MB) memory is freed here, not by the broker thread dropping the last reference.
    std::shared_ptr<const crl_set> retired_;

    std::mutex mutex_;  // guards learned_urls_ and reload_
    bool reload_ = false;
    background_loop loop_;  // last: stopped before the members its thread uses go away
};

}  // namespace devicegate
