#include "devicegate/job_producer.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace devicegate {

const char* const first_connect_script = R"lua(
local fp = redis.call('HGET', KEYS[1], 'fingerprint')
if not fp then
  redis.call('HSET', KEYS[1], 'first_seen', ARGV[3], 'serial', ARGV[2], 'fingerprint', ARGV[1], 'broker', ARGV[4])
  redis.call('XADD', KEYS[2], '*', 'type', 'first_connect', 'job', ARGV[5])
  return 1
end
if fp ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'serial', ARGV[2], 'fingerprint', ARGV[1], 'cert_changed_at', ARGV[3], 'broker', ARGV[4])
  redis.call('XADD', KEYS[2], '*', 'type', 'certificate_changed', 'job', ARGV[6])
  return 2
end
return 0
)lua";

job_producer::job_producer(options opts, logger log) : opts_(std::move(opts)), log_(std::move(log)) {}

job_producer::~job_producer() { stop(); }

void job_producer::start() {
    counters_.journaled = count_journal_lines();
    if (counters_.journaled > 0) {
        log_.notice("devicegate: jobs journal " + opts_.journal_file + " holds " +
                    std::to_string(counters_.journaled.load()) + " undelivered first-connect jobs; delivering them");
    }
    loop_.start();
}

void job_producer::stop() noexcept { loop_.stop(); }

void job_producer::submit(device_certificate cert) {
    {
        std::lock_guard lock(mutex_);
        if (pending_.size() >= opts_.pending_limit) {
            ++counters_.overflow;
            if (!overflow_logged_) {
                overflow_logged_ = true;
                log_.error("devicegate: jobs overflow: " + std::to_string(opts_.pending_limit) +
                           " first-connect jobs are waiting for the delivery thread; dropping device=" + cert.device_id);
            }
            return;
        }
        overflow_logged_ = false;
        pending_.push_back(std::move(cert));
    }
    ++counters_.submitted;
    loop_.wake();
}

bool job_producer::back_off(background_loop& loop, std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
        if (!loop.wait_until(until)) return false;
    }
    return true;
}

void job_producer::run(background_loop& loop) {
    std::unique_ptr<redis_connection> redis;
    std::chrono::milliseconds backoff{100};
    for (;;) {
        bool idle = false;
        {
            std::lock_guard lock(mutex_);
            idle = pending_.empty() && redis && buffer_.empty();
        }
        // Idle: wait for a submission (wake) or a second, then PING.
        if (idle) loop.wait_for(std::chrono::seconds(1));
        {
            std::lock_guard lock(mutex_);
            for (auto& c : pending_) buffer_.push_back(std::move(c));
            pending_.clear();
        }
        counters_.buffered = buffer_.size();
        if (loop.stopping()) {
            spill_to_journal(0);
            return;
        }
        try {
            if (!redis) {
                redis = connect();
                backoff = std::chrono::milliseconds(100);
            }
            deliver_all(*redis);
        } catch (const std::exception& e) {
            redis.reset();
            counters_.link_up = false;
            if (!down_logged_) {
                ++counters_.link_downs;
                log_.warning("devicegate: jobs link to redis down (" + opts_.redis.describe() + "): " +
                             log_safe(e.what(), 300) + "; buffering first-connect jobs");
                down_logged_ = true;
            }
        }
        if (!redis) {
            spill_to_journal(opts_.memory_limit);
            counters_.buffered = buffer_.size();
            if (!back_off(loop, backoff)) continue;  // stopping: the next pass journals and returns
            backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        }
    }
}

std::unique_ptr<redis_connection> job_producer::connect() {
    auto redis = std::make_unique<redis_connection>(opts_.redis);
    script_sha_ = reply_string(redis->command({"SCRIPT", "LOAD", first_connect_script}).get(), "SCRIPT LOAD");
    counters_.link_up = true;
    if (down_logged_) log_.notice("devicegate: jobs link to redis up again (" + opts_.redis.describe() + ")");
    down_logged_ = false;
    return redis;
}

void job_producer::deliver_all(redis_connection& redis) {
    deliver_journal(redis);
    if (buffer_.empty()) {
        // Idle: a PING keeps the link state (and $SYS jobs/link) honest.
        reply_string(redis.command({"PING"}).get(), "PING");
    }
    deliver_buffer(redis);
}

void job_producer::deliver(redis_connection& redis, const device_certificate& cert) {
    std::vector<std::string> argv{"EVALSHA",
                                  script_sha_,
                                  "2",
                                  opts_.model.device(cert.device_id),
                                  opts_.model.jobs(),
                                  cert.fingerprint_sha256,
                                  cert.serial_hex,
                                  std::to_string(cert.first_seen),
                                  cert.broker_id,
                                  encode_job(cert, job_type::first_connect),
                                  encode_job(cert, job_type::certificate_changed)};
    auto reply = redis.command(argv);
    if (is_error_code(reply.get(), "NOSCRIPT")) {
        argv[0] = "EVAL";  // Redis restarted or SCRIPT FLUSH: send the body once more
        argv[1] = first_connect_script;
        reply = redis.command(argv);
    }
    try {
        switch (reply_integer(reply.get(), "first-connect script")) {
            case 1: ++counters_.first_connect; break;
            case 2: ++counters_.certificate_changed; break;
            default: ++counters_.known; break;
        }
    } catch (const redis_data_error& e) {
        // Redis answered but refused (e.g. the device key is not a hash): retrying cannot help.
        ++counters_.rejected;
        log_.error("devicegate: first-connect job for device=" + cert.device_id + " refused by Redis: " +
                   log_safe(e.what(), 300) + "; job dropped");
    }
}

void job_producer::deliver_buffer(redis_connection& redis) {
    while (!buffer_.empty()) {
        deliver(redis, buffer_.front());
        buffer_.pop_front();
        counters_.buffered = buffer_.size();
    }
}

std::size_t job_producer::count_journal_lines() {
    std::ifstream in(opts_.journal_file);
    std::size_t n = 0;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty()) ++n;
    }
    return n;
}

void job_producer::deliver_journal(redis_connection& redis) {
    if (counters_.journaled == 0) return;
    std::vector<std::string> lines;
    {
        std::ifstream in(opts_.journal_file);
        std::string line;
        while (std::getline(in, line)) {
            if (!line.empty()) lines.push_back(std::move(line));
        }
    }
    std::size_t done = 0;
    try {
        for (; done < lines.size(); ++done) {
            device_certificate cert;
            try {
                cert = parse_journal_line(lines[done]);
            } catch (const std::invalid_argument& e) {
                ++counters_.rejected;
                log_.error("devicegate: malformed line " + std::to_string(done + 1) + " in " + opts_.journal_file +
                           ": " + e.what() + "; skipped");
                continue;
            }
            deliver(redis, cert);
        }
    } catch (...) {
        // Keep what was not delivered (delivered lines may repeat: the script is idempotent).
        std::ofstream out(opts_.journal_file + ".tmp", std::ios::trunc);
        for (std::size_t i = done; i < lines.size(); ++i) out << lines[i] << '\n';
        out.close();
        std::rename((opts_.journal_file + ".tmp").c_str(), opts_.journal_file.c_str());
        counters_.journaled = lines.size() - done;
        throw;
    }
    std::remove(opts_.journal_file.c_str());
    log_.notice("devicegate: delivered " + std::to_string(lines.size()) + " journaled first-connect jobs");
    counters_.journaled = 0;
}

void job_producer::spill_to_journal(std::size_t keep_in_memory) {
    if (buffer_.size() <= keep_in_memory) return;
    if (opts_.journal_file.empty()) return;
    int fd = ::open(opts_.journal_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_.error("devicegate: cannot open the jobs journal " + opts_.journal_file + ": " + std::strerror(errno) +
                   "; " + std::to_string(buffer_.size()) + " jobs stay in memory");
        return;
    }
    struct stat st {};
    ::fstat(fd, &st);
    auto size = static_cast<std::uint64_t>(st.st_size);
    std::string out;
    while (buffer_.size() > keep_in_memory) {
        std::string line = encode_journal_line(buffer_.back()) + "\n";
        if (size + out.size() + line.size() > opts_.journal_max_bytes) {
            ++counters_.overflow;
            log_.error("devicegate: jobs journal " + opts_.journal_file + " is full (" +
                       std::to_string(opts_.journal_max_bytes) + " bytes); dropping the job of device=" +
                       buffer_.back().device_id);
        } else {
            out += line;
            ++counters_.journaled;
        }
        buffer_.pop_back();
    }
    bool ok = ::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) log_.error("devicegate: writing the jobs journal " + opts_.journal_file + " failed: " + std::strerror(errno));
}

}  // namespace devicegate
