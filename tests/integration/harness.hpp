#pragma once
// Integration test harness: real mosquitto with the real plugin on a free port, generated
// config, real MQTT clients (libmosquitto) over TLS with the generated test PKI. Broker logs
// are printed when a test case fails.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <sys/types.h>
#include <thread>
#include <utility>
#include <vector>

#include <mosquitto.h>
#include <nlohmann/json.hpp>

namespace devicegate::itest {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

std::string pki(const std::string& name);
/// The serial of devices/<name>.crt as `openssl x509 -serial` prints it (and the plugin logs it).
std::string serial_of(const std::string& device);
/// Called after each test (case): prints the logs of the processes it started if it failed,
/// and removes its directories.
void end_of_test(bool failed);
/// A port that was free a moment ago (the OS picked it; then the socket is closed). Another
/// process may take it before a child binds it: children that can bind port 0 and report the
/// port get 0 instead, and the others (mosquitto, redis-server, openssl ocsp, the worker's
/// metrics) are started again on a new port when their bind fails (see start_retrying).
int free_port();
/// Listens on a loopback port until destroyed: stands in for another process that took it.
class port_holder {
public:
    explicit port_holder(int port);
    ~port_holder();
    port_holder(const port_holder&) = delete;
    port_holder& operator=(const port_holder&) = delete;

private:
    int fd_;
};
/// How often a child whose port was taken is started again on a new port.
inline constexpr int port_attempts = 5;
/// The log written since `offset` (the part of a log file that belongs to one start).
std::string log_since(const std::filesystem::path& log, std::uintmax_t offset);
/// The size of a file, 0 if it does not exist: where the next start's log lines begin.
std::uintmax_t log_size(const std::filesystem::path& log);
/// Undoes a start attempt that lost its port: moves the lines it logged after `offset` to
/// `<log>.lost-port` (kept for the failure report) and cuts the log back to `offset`.
void drop_attempt_log(const std::filesystem::path& log, std::uintmax_t offset);
/// A directory that lives until the end of the current test case (then its logs are
/// printed if the test case failed, and it is removed).
std::filesystem::path test_dir();
void replace_file(const std::filesystem::path& target, const std::filesystem::path& source);
void write_text(const std::filesystem::path& target, const std::string& text);

/// Polls `done` until it is true or the timeout passes (every 20 ms).
template <class F>
bool eventually(F&& done, std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = clock::now() + timeout;
    while (!done()) {
        if (clock::now() > deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

class process {
public:
    process(const std::vector<std::string>& argv, const std::filesystem::path& log);
    ~process();
    process(const process&) = delete;
    process& operator=(const process&) = delete;
    void signal(int sig) const;
    /// Waits for exit; returns the exit status, or nullopt on timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);
    bool running();
    void stop();
    pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
};

/// A real redis-server on a free loopback port, with its data in a test directory.
class redis_server {
public:
    /// `durable`: append-only file with fsync always, so a SIGKILL loses nothing.
    explicit redis_server(bool durable = false);
    /// A second server on the data directory `dir` of another one (which must be stopped),
    /// logging to `dir/<log_name>`.
    redis_server(std::filesystem::path dir, bool durable, const std::string& log_name);
    ~redis_server();
    /// Starts redis-server and waits until it answers PING. The first start picks the port
    /// (a new one while the bind fails); a restart keeps it, since clients know its URL.
    bool start();
    void kill();  // SIGKILL, like a crash
    /// SIGTERM; true if it exited within 5 s.
    bool stop();
    int port() const { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
    /// Runs one command on a fresh connection; throws on I/O errors.
    std::string command(const std::vector<std::string>& argv) const;
    long long integer(const std::vector<std::string>& argv) const;
    const std::filesystem::path& dir() const { return dir_; }

private:
    /// One attempt: true if it serves; false with `lost_port` set if the bind failed.
    bool start_once(bool& lost_port);

    std::filesystem::path dir_;
    std::filesystem::path log_path_;
    int port_;
    bool durable_;
    bool started_ = false;
    std::unique_ptr<process> process_;
};

struct broker_options {
    std::vector<std::pair<std::string, std::string>> plugin_opts;  // beyond the tenant CA files
    std::vector<std::string> crl_files = {pki("subca-a.crl.pem")};
    std::string listener_extra;  // extra lines inside the listener block
    const redis_server* redis = nullptr;  // adds plugin_opt_redis_url and a state_dir
    bool plugin = true;                   // false: mosquitto's own TLS checks only (benchmarks)
};

class broker {
public:
    explicit broker(broker_options options = {});
    ~broker();
    /// Starts mosquitto; returns false if it exited instead of listening. mosquitto cannot
    /// listen on port 0 and report it, so when another process took the port it is started
    /// again on a new one (port() changes; read it after start()).
    bool start();
    /// SIGTERM and wait: the plugin's cleanup runs (journals undelivered jobs).
    void stop();
    std::string log() const;
    bool log_contains(const std::string& needle) const;
    bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout = 5000ms) const;
    void signal(int sig) const;
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);
    pid_t pid() const;
    int port() const { return port_; }
    const std::filesystem::path& dir() const { return dir_; }

private:
    void write_config() const;
    /// One attempt: true if it listens; false with `lost_port` set if the bind failed.
    bool start_once(bool& lost_port);

    std::filesystem::path dir_;
    std::filesystem::path log_path_;
    int port_;
    static const std::string redis_url_marker;
    std::string config_before_listener_, config_after_listener_;
    const redis_server* redis_ = nullptr;
    std::unique_ptr<process> process_;
};

/// A PUBACK that accepted the message (MQTT v5: 0 success, 16 no matching subscribers).
inline bool accepted(int puback) { return puback == 0 || puback == 16; }

/// Connection outcome: the CONNACK reason, or transport_error when TLS or TCP failed.
inline constexpr int transport_error = -1;

class client {
public:
    /// `cert` may hold a chain (leaf first). Uses MQTT v5 so refusals carry reason codes.
    client(std::string id, std::string cert, std::string key);
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// `bind_address`: the local address to connect from (e.g. 127.0.0.2: a second source
    /// host on loopback); then the broker is reached at 127.0.0.1.
    int connect(int port, std::chrono::milliseconds timeout = 5000ms, const std::string& bind_address = "");
    bool connected();
    bool wait_disconnected(std::chrono::milliseconds timeout = 5000ms);
    /// Publishes QoS 1 and returns the PUBACK reason code (0 ok, 135 not authorised), or -1.
    int publish(const std::string& topic, const std::string& payload);
    /// Subscribes QoS 1 and returns the granted QoS / reason code (135 not authorised), or -1.
    int subscribe(const std::string& filter);
    std::optional<std::string> wait_message(const std::string& topic, std::chrono::milliseconds timeout = 3000ms);
    std::chrono::steady_clock::time_point disconnected_at();

private:
    static void on_connect(struct mosquitto*, void*, int, int, const mosquitto_property*);
    static void on_disconnect(struct mosquitto*, void*, int, const mosquitto_property*);
    static void on_publish(struct mosquitto*, void*, int, int, const mosquitto_property*);
    static void on_subscribe(struct mosquitto*, void*, int, int, const int*, const mosquitto_property*);
    static void on_message(struct mosquitto*, void*, const struct mosquitto_message*, const mosquitto_property*);
    void loop();
    void stop_loop();

    std::string id_;
    struct mosquitto* mosq_ = nullptr;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::optional<int> connack_;
    bool disconnected_ = false;
    std::chrono::steady_clock::time_point disconnected_at_{};
    std::map<int, int> acks_;  // mid -> reason code / granted qos
    std::multimap<std::string, std::string> messages_;
    std::thread loop_thread_;
    bool stop_ = false;
};

}  // namespace devicegate::itest

namespace devicegate::itest {

/// Connects every (id, cert, key) concurrently, `parallel` at a time; each connects, waits
/// for CONNACK and disconnects. Returns how many were accepted.
struct device_files {
    std::string id, cert, key;
};
int connect_all(const std::vector<device_files>& devices, int port, int parallel);

/// Runs devicegate-ctl with the given arguments; returns its exit code and output.
struct ctl_result {
    int exit_code = -1;
    std::string out;  // stdout and stderr
};
ctl_result ctl(const std::vector<std::string>& args, const std::string& redis_url);

/// A client for a generated device: certificate tests/pki devices/<name>.crt (or the given
/// chain file), client id `id` (defaults to the name).
inline std::unique_ptr<client> device(const std::string& name, const std::string& id = "",
                                      const std::string& cert_file = "") {
    return std::make_unique<client>(id.empty() ? name : id,
                                    cert_file.empty() ? pki("devices/" + name + ".crt") : cert_file,
                                    pki("devices/" + name + ".key"));
}

/// The fake ThingsBoard and hawkBit (devicegate-fakes) on loopback ports they pick themselves
/// (port 0; read back from the line they print), kept on a restart.
class fake_backends {
public:
    explicit fake_backends(std::vector<std::string> extra_args = {});
    bool start();
    std::string thingsboard_url() const { return "http://127.0.0.1:" + std::to_string(tb_port_); }
    std::string hawkbit_url() const { return "http://127.0.0.1:" + std::to_string(hb_port_); }
    nlohmann::json thingsboard_state() const { return get(thingsboard_url() + "/_fake/state"); }
    nlohmann::json hawkbit_state() const { return get(hawkbit_url() + "/_fake/state"); }
    /// The ThingsBoard device with its credentials and rule-engine messages; null if none.
    nlohmann::json thingsboard_device(const std::string& name) const;
    /// POST /_fake/faults (see tests/fakes/fake_backends.hpp); {} clears them.
    void thingsboard_faults(const nlohmann::json& plan) const { post(thingsboard_url() + "/_fake/faults", plan); }
    void hawkbit_faults(const nlohmann::json& plan) const { post(hawkbit_url() + "/_fake/faults", plan); }
    void expire_tokens() const { post(thingsboard_url() + "/_fake/expire_tokens", nlohmann::json::object()); }

private:
    static nlohmann::json get(const std::string& url);
    static void post(const std::string& url, const nlohmann::json& body);
    std::filesystem::path dir_;
    int tb_port_ = 0, hb_port_ = 0;
    std::vector<std::string> extra_args_;
    std::unique_ptr<process> process_;
};

struct worker_options {
    std::string consumer_name = "worker-a";
    int concurrency = 4;
    std::string claim_idle = "2s";
    std::string max_attempts = "8";
    std::string retry_initial = "50ms";
    std::string retry_max = "500ms";
    std::vector<std::pair<std::string, std::string>> extra;  // more "key value" settings
};

/// devicegate-worker with a generated config file, its metrics on a free port.
class worker_process {
public:
    worker_process(const redis_server& redis, const fake_backends& fakes, worker_options options = {});
    /// On any Redis URL (e.g. a sentinel_set's).
    worker_process(const std::string& redis_url, const fake_backends& fakes, worker_options options = {});
    /// Starts it and waits until it is connected to Redis; false if it exited. The worker
    /// cannot report a port-0 metrics listener, so when another process took the metrics port
    /// it is started again on a new one.
    bool start();
    void signal(int sig) const;
    std::optional<int> wait_exit(std::chrono::milliseconds timeout);
    std::string log() const;
    bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout = 5000ms) const;
    /// The value of one metric line ("name{labels}"), -1 if absent.
    double metric(const std::string& name) const;
    const std::filesystem::path& config_file() const { return config_; }
    int metrics_port() const { return metrics_port_; }

private:
    void write_config() const;

    std::filesystem::path dir_, config_, log_path_;
    int metrics_port_;
    std::string config_text_;  // without metrics_listen
    std::unique_ptr<process> process_;
};

/// Jobs as the plugin writes them (schema 1), for certificates issued in memory by Sub-CA A.
struct injected_job {
    std::string device_id, certificate_pem, payload;
};
std::vector<injected_job> make_jobs(const std::string& prefix, int count);
/// XADDs every payload to devicegate:jobs (pipelined).
void inject(const redis_server& redis, const std::vector<std::string>& payloads);

}  // namespace devicegate::itest

