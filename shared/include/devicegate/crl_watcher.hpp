#pragma once
// Background reloading of the CRL files: polls them (and reloads at once on request, e.g.
// SIGHUP), verifies each against the tenant chain, keeps the last good CRLs of a file whose
// new content is bad, publishes a new revocation snapshot and asks for the newly revoked
// devices to be kicked.
#include "devicegate/broker_queue.hpp"
#include "devicegate/config.hpp"
#include "devicegate/log.hpp"
#include "devicegate/revocation.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace devicegate {

class crl_watcher {
public:
    crl_watcher(std::shared_ptr<const tenant_trust> trust, std::vector<std::string> files,
                std::chrono::milliseconds poll_interval, snapshot_slot<revocation_snapshot>& slot,
                broker_queue& queue, logger log);
    ~crl_watcher();
    crl_watcher(const crl_watcher&) = delete;
    crl_watcher& operator=(const crl_watcher&) = delete;

    /// Start-up: loads every file synchronously and publishes the first snapshot. Throws
    /// pki_error naming the file and cause (the broker refuses to start without its CRLs).
    void load_initial();
    void start();
    /// Wakes the thread to re-read the files now; cheap and safe on the broker thread.
    void request_reload() noexcept;
    void stop() noexcept;

    /// One polling pass (what the thread runs); public for tests.
    void poll_once();

private:
    struct file_stamp {
        dev_t dev = 0;
        ino_t ino = 0;
        off_t size = -1;
        long mtime_ns = 0;
        long ctime_ns = 0;
        bool operator==(const file_stamp&) const = default;
    };
    struct file_state {
        std::string path;
        file_stamp seen;                  // the content last tried (good or bad)
        bool missing_reported = false;
        std::vector<verified_crl> last_good;
    };

    void run();
    void publish(const char* why);

    std::shared_ptr<const tenant_trust> trust_;
    std::vector<file_state> files_;
    std::chrono::milliseconds poll_interval_;
    snapshot_slot<revocation_snapshot>& slot_;
    broker_queue& queue_;
    logger log_;
    std::uint64_t generation_ = 0;
    // The snapshot replaced last: held until the next publish so that its (possibly tens of
    // MB) memory is freed here, not by the broker thread dropping the last reference.
    std::shared_ptr<const revocation_snapshot> retired_;

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    bool reload_ = false;
    std::thread thread_;
};

}  // namespace devicegate
