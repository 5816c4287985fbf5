#include "harness.hpp"

#include "devicegate/redis.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

namespace devicegate::itest {

namespace {

struct artifacts {
    std::mutex mutex;
    std::vector<std::filesystem::path> dirs;
    std::vector<std::filesystem::path> logs;
};
artifacts& current_artifacts() {
    static artifacts a;
    return a;
}

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct lib_init {
    lib_init() { mosquitto_lib_init(); }
    ~lib_init() { mosquitto_lib_cleanup(); }
};

}  // namespace

void end_of_test(bool failed) {
    auto& a = current_artifacts();
    std::lock_guard lock(a.mutex);
    if (failed) {
        for (const auto& log : a.logs) {
            std::cerr << "----- " << log.string() << " -----\n" << slurp(log) << "\n----- end -----\n";
        }
    }
    for (const auto& dir : a.dirs) {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    a.dirs.clear();
    a.logs.clear();
}

std::string pki(const std::string& name) { return std::string(DEVICEGATE_TEST_PKI) + "/" + name; }

std::string serial_of(const std::string& device) {
    std::string cmd = "openssl x509 -noout -serial -in " + pki("devices/" + device + ".crt");
    FILE* p = ::popen(cmd.c_str(), "r");
    char buf[256] = {};
    if (p) {
        std::fgets(buf, sizeof buf, p);
        ::pclose(p);
    }
    std::string s(buf);
    auto eq = s.find('=');
    return eq == std::string::npos ? s : s.substr(eq + 1, s.find('\n') - eq - 1);
}

int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

port_holder::port_holder(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 1) != 0) {
        if (fd_ >= 0) ::close(fd_);
        throw std::runtime_error("cannot hold port " + std::to_string(port));
    }
}

port_holder::~port_holder() { ::close(fd_); }

std::uintmax_t log_size(const std::filesystem::path& log) {
    std::error_code ec;
    auto size = std::filesystem::file_size(log, ec);
    return ec ? 0 : size;
}

std::string log_since(const std::filesystem::path& log, std::uintmax_t offset) {
    std::string text = slurp(log);
    return offset < text.size() ? text.substr(offset) : std::string();
}

void drop_attempt_log(const std::filesystem::path& log, std::uintmax_t offset) {
    auto lost = log;
    lost += ".lost-port";
    {
        std::ofstream out(lost, std::ios::binary | std::ios::app);
        out << log_since(log, offset);
    }
    std::filesystem::resize_file(log, offset);
    auto& a = current_artifacts();
    std::lock_guard lock(a.mutex);
    if (std::find(a.logs.begin(), a.logs.end(), lost) == a.logs.end()) a.logs.push_back(lost);
}

std::filesystem::path test_dir() {
    std::random_device rd;
    auto dir = std::filesystem::temp_directory_path() / ("devicegate-it-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(dir);
    auto& a = current_artifacts();
    std::lock_guard lock(a.mutex);
    a.dirs.push_back(dir);
    return dir;
}

void write_text(const std::filesystem::path& target, const std::string& text) {
    auto tmp = target;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
    }
    std::filesystem::rename(tmp, target);
}

void replace_file(const std::filesystem::path& target, const std::filesystem::path& source) {
    write_text(target, slurp(source));
}

// ---------------------------------------------------------------- process

process::process(const std::vector<std::string>& argv, const std::filesystem::path& log) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + log.string());
    {
        auto& a = current_artifacts();
        std::lock_guard lock(a.mutex);
        a.logs.push_back(log);
    }
    pid_ = ::fork();
    if (pid_ == 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    ::close(fd);
    if (pid_ < 0) throw std::runtime_error("fork failed");
}

process::~process() { stop(); }

void process::signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> process::wait_exit(std::chrono::milliseconds timeout) {
    if (status_) return status_;
    auto deadline = clock::now() + timeout;
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return status_;
        }
        if (clock::now() > deadline) return std::nullopt;
        std::this_thread::sleep_for(10ms);
    }
}

bool process::running() { return !wait_exit(0ms).has_value(); }

void process::stop() {
    if (pid_ <= 0 || status_) return;
    signal(SIGTERM);
    if (!wait_exit(5000ms)) {
        signal(SIGKILL);
        wait_exit(5000ms);
    }
}

// ---------------------------------------------------------------- broker

broker::broker(broker_options options) : dir_(test_dir()), log_path_(dir_ / "mosquitto.log"), port_(free_port()) {
    std::ostringstream head;
    head << "# generated by the DeviceGate integration tests\n"
         << "per_listener_settings false\n"
         << "log_dest stderr\nlog_type all\n"
         << "persistence false\n";
    if (::geteuid() == 0) head << "user root\n";  // mosquitto would drop to 'mosquitto' and lose the test files
    config_before_listener_ = head.str();
    std::ostringstream conf;  // the listener's settings, then the plugin
    conf << "cafile " << pki("tenant-a-chain.crt") << "\n"
         << "certfile " << pki("server-chain.crt") << "\n"
         << "keyfile " << pki("server.key") << "\n"
         << "require_certificate true\n"
         << "set_tcp_nodelay true\n"
         << options.listener_extra << "\n";
    config_after_listener_ = conf.str();
    write_config();
    if (!options.plugin) return;
    conf << "plugin " << DEVICEGATE_PLUGIN_PATH << "\n"
         << "plugin_opt_tenant_ca_file " << pki("subca-a.crt") << "\n"
         << "plugin_opt_ica_file " << pki("ica.crt") << "\n"
         << "plugin_opt_root_ca_file " << pki("root.crt") << "\n";
    for (const auto& crl : options.crl_files) conf << "plugin_opt_crl_file " << crl << "\n";
    // Every broker keeps its state (CRLs in force, journal) in its own test directory.
    conf << "plugin_opt_state_dir " << dir_.string() << "\n";
    redis_ = options.redis;
    if (options.redis != nullptr) conf << "plugin_opt_redis_url " << redis_url_marker << "\n";
    for (const auto& [k, v] : options.plugin_opts) conf << "plugin_opt_" << k << " " << v << "\n";
    config_after_listener_ = conf.str();
    write_config();
}

broker::~broker() = default;

// Replaced when the file is written: the redis-server's port is only final once it started.
const std::string broker::redis_url_marker = "@REDIS_URL@";

void broker::write_config() const {
    std::string rest = config_after_listener_;
    if (auto at = rest.find(redis_url_marker); at != std::string::npos) {
        rest.replace(at, redis_url_marker.size(), redis_->url());
    }
    write_text(dir_ / "mosquitto.conf",
               config_before_listener_ + "listener " + std::to_string(port_) + " 127.0.0.1\n" + rest);
}

bool broker::start() {
    write_config();
    for (int attempt = 1;; ++attempt) {
        bool lost_port = false;
        if (start_once(lost_port)) return true;
        if (!lost_port || attempt == port_attempts) return false;
        port_ = free_port();
        write_config();
    }
}

bool broker::start_once(bool& lost_port) {
    const auto offset = log_size(log_path_);
    process_ = std::make_unique<process>(
        std::vector<std::string>{"mosquitto", "-c", (dir_ / "mosquitto.conf").string()}, log_path_);
    // Only this start's lines count: a restarted broker's log still holds the last run's.
    const bool up = eventually(
        [&] {
            if (!process_->running()) return true;
            const std::string log = log_since(log_path_, offset);
            return log.find("mosquitto version") != std::string::npos && log.find(" running") != std::string::npos;
        },
        10000ms);
    if (up && process_->running()) return true;
    // mosquitto 2.0 (net__socket_listen): "Error: Address already in use", then it exits.
    if (!process_->running() && log_since(log_path_, offset).find("Address already in use") != std::string::npos) {
        lost_port = true;
        drop_attempt_log(log_path_, offset);
    }
    return false;
}

pid_t broker::pid() const { return process_ ? process_->pid() : -1; }

void broker::stop() {
    if (process_) process_->stop();
}

std::string broker::log() const { return slurp(log_path_); }
bool broker::log_contains(const std::string& needle) const { return log().find(needle) != std::string::npos; }
bool broker::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const {
    return eventually([&] { return log_contains(needle); }, timeout);
}
void broker::signal(int sig) const { process_->signal(sig); }
std::optional<int> broker::wait_exit(std::chrono::milliseconds timeout) { return process_->wait_exit(timeout); }

// ---------------------------------------------------------------- redis

redis_server::redis_server(bool durable)
    : dir_(test_dir()), log_path_(dir_ / "redis.log"), port_(free_port()), durable_(durable) {}

redis_server::redis_server(std::filesystem::path dir, bool durable, const std::string& log_name)
    : dir_(std::move(dir)), log_path_(dir_ / log_name), port_(free_port()), durable_(durable) {}

redis_server::~redis_server() = default;

bool redis_server::start() {
    for (int attempt = 1;; ++attempt) {
        bool lost_port = false;
        if (start_once(lost_port)) {
            started_ = true;
            return true;
        }
        // A restart keeps its port: the broker and the worker under test know this URL.
        if (!lost_port || started_ || attempt == port_attempts) return false;
        port_ = free_port();
    }
}

bool redis_server::start_once(bool& lost_port) {
    std::vector<std::string> argv{"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                  "--dir", dir_.string(), "--save", ""};
    if (durable_) {
        argv.insert(argv.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    } else {
        argv.insert(argv.end(), {"--appendonly", "no"});
    }
    const auto offset = log_size(log_path_);
    process_ = std::make_unique<process>(argv, log_path_);
    // Ready when *this* process says so (a PING alone could reach another test's redis-server
    // that took the port), then answers.
    const bool ready = eventually(
        [&] {
            if (!process_->running()) return true;
            return log_since(log_path_, offset).find("Ready to accept connections") != std::string::npos;
        },
        5000ms);
    if (ready && process_->running()) {
        return eventually(
            [&] {
                try {
                    return command({"PING"}) == "PONG";
                } catch (const std::exception&) {
                    return false;
                }
            },
            5000ms);
    }
    // redis 7: "Warning: Could not create server TCP listening socket 127.0.0.1:<port>: bind:
    // Address already in use", then it exits.
    if (!process_->running() && log_since(log_path_, offset).find("Address already in use") != std::string::npos) {
        lost_port = true;
        drop_attempt_log(log_path_, offset);
    }
    return false;
}

bool redis_server::stop() {
    if (!process_) return true;
    process_->signal(SIGTERM);
    const bool exited = process_->wait_exit(5000ms).has_value();
    process_.reset();
    return exited;
}

void redis_server::kill() {
    if (!process_) return;
    process_->signal(SIGKILL);
    process_->wait_exit(5000ms);
    process_.reset();
}

std::string redis_server::command(const std::vector<std::string>& argv) const {
    redis_options o;
    o.port = port_;
    o.connect_timeout = 500ms;
    redis_connection c(o);
    auto reply = c.command(argv);
    if (reply->type == REDIS_REPLY_INTEGER) return std::to_string(reply->integer);
    if (reply->type == REDIS_REPLY_NIL) return "(nil)";
    if (reply->type == REDIS_REPLY_ARRAY) return "(array of " + std::to_string(reply->elements) + ")";
    return std::string(reply->str, reply->len);
}

long long redis_server::integer(const std::vector<std::string>& argv) const { return std::stoll(command(argv)); }

int connect_all(const std::vector<device_files>& devices, int port, int parallel) {
    std::atomic<int> accepted{0};
    std::atomic<std::size_t> next{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < parallel; ++w) {
        workers.emplace_back([&] {
            for (std::size_t i = next++; i < devices.size(); i = next++) {
                client c(devices[i].id, devices[i].cert, devices[i].key);
                if (c.connect(port, 10000ms) == 0) ++accepted;
            }
        });
    }
    for (auto& t : workers) t.join();
    return accepted;
}

ctl_result ctl(const std::vector<std::string>& args, const std::string& redis_url) {
    std::string cmd = "DEVICEGATE_REDIS_URL='" + redis_url + "' " + DEVICEGATE_CTL_PATH;
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " 2>&1";
    ctl_result r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// ---------------------------------------------------------------- client

client::client(std::string id, std::string cert, std::string key) : id_(std::move(id)) {
    static lib_init init;
    mosq_ = mosquitto_new(id_.c_str(), true, this);
    if (!mosq_) throw std::runtime_error("mosquitto_new failed");
    // The loop runs on our own thread (not mosquitto_loop_start): libmosquitto only locks
    // around its state when told so.
    mosquitto_threaded_set(mosq_, true);
    mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (mosquitto_tls_set(mosq_, pki("root.crt").c_str(), nullptr, cert.c_str(), key.c_str(), nullptr) !=
        MOSQ_ERR_SUCCESS) {
        throw std::runtime_error("mosquitto_tls_set failed for " + cert);
    }
    mosquitto_connect_v5_callback_set(mosq_, on_connect);
    mosquitto_disconnect_v5_callback_set(mosq_, on_disconnect);
    mosquitto_publish_v5_callback_set(mosq_, on_publish);
    mosquitto_subscribe_v5_callback_set(mosq_, on_subscribe);
    mosquitto_message_v5_callback_set(mosq_, on_message);
}

client::~client() {
    stop_loop();
    mosquitto_destroy(mosq_);
}

void client::stop_loop() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    if (loop_thread_.joinable()) {
        mosquitto_disconnect(mosq_);
        loop_thread_.join();
    }
}

void client::loop() {
    for (;;) {
        {
            std::lock_guard lock(mutex_);
            if (stop_ || disconnected_) return;
        }
        int rc = mosquitto_loop(mosq_, 50, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            std::lock_guard lock(mutex_);
            if (!disconnected_) {
                disconnected_ = true;
                disconnected_at_ = clock::now();
            }
            changed_.notify_all();
            return;  // no automatic reconnect: tests decide
        }
    }
}

int client::connect(int port, std::chrono::milliseconds timeout, const std::string& bind_address) {
    const int rc = bind_address.empty() ? mosquitto_connect(mosq_, "localhost", port, 30)
                                        : mosquitto_connect_bind(mosq_, "127.0.0.1", port, 30, bind_address.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return transport_error;
    loop_thread_ = std::thread([this] { loop(); });
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return connack_.has_value() || disconnected_; })) return transport_error;
    return connack_.value_or(transport_error);
}

bool client::connected() {
    std::lock_guard lock(mutex_);
    return connack_ == 0 && !disconnected_;
}

bool client::wait_disconnected(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return disconnected_; });
}

std::chrono::steady_clock::time_point client::disconnected_at() {
    std::lock_guard lock(mutex_);
    return disconnected_at_;
}

int client::publish(const std::string& topic, const std::string& payload) {
    int mid = 0;
    if (mosquitto_publish_v5(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1, false,
                             nullptr) != MOSQ_ERR_SUCCESS) {
        return -1;
    }
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, 5s, [&] { return acks_.count(mid) > 0 || disconnected_; })) return -1;
    return acks_.count(mid) ? acks_[mid] : -1;
}

int client::subscribe(const std::string& filter) {
    int mid = 0;
    if (mosquitto_subscribe_v5(mosq_, &mid, filter.c_str(), 1, 0, nullptr) != MOSQ_ERR_SUCCESS) return -1;
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, 5s, [&] { return acks_.count(mid) > 0 || disconnected_; })) return -1;
    return acks_.count(mid) ? acks_[mid] : -1;
}

std::optional<std::string> client::wait_message(const std::string& topic, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, timeout, [&] { return messages_.count(topic) > 0; })) return std::nullopt;
    auto it = messages_.find(topic);
    std::string payload = it->second;
    messages_.erase(it);
    return payload;
}

void client::on_connect(struct mosquitto*, void* self, int rc, int, const mosquitto_property*) {
    auto* c = static_cast<client*>(self);
    std::lock_guard lock(c->mutex_);
    c->connack_ = rc;
    c->changed_.notify_all();
}

void client::on_disconnect(struct mosquitto*, void* self, int, const mosquitto_property*) {
    auto* c = static_cast<client*>(self);
    std::lock_guard lock(c->mutex_);
    if (!c->disconnected_) {
        c->disconnected_ = true;
        c->disconnected_at_ = clock::now();
    }
    c->changed_.notify_all();
}

void client::on_publish(struct mosquitto*, void* self, int mid, int reason_code, const mosquitto_property*) {
    auto* c = static_cast<client*>(self);
    std::lock_guard lock(c->mutex_);
    c->acks_[mid] = reason_code;
    c->changed_.notify_all();
}

void client::on_subscribe(struct mosquitto*, void* self, int mid, int count, const int* granted,
                          const mosquitto_property*) {
    auto* c = static_cast<client*>(self);
    std::lock_guard lock(c->mutex_);
    c->acks_[mid] = count > 0 ? granted[0] : -1;
    c->changed_.notify_all();
}

void client::on_message(struct mosquitto*, void* self, const struct mosquitto_message* msg, const mosquitto_property*) {
    auto* c = static_cast<client*>(self);
    std::lock_guard lock(c->mutex_);
    c->messages_.emplace(msg->topic, std::string(static_cast<const char*>(msg->payload),
                                                 static_cast<std::size_t>(msg->payloadlen)));
    c->changed_.notify_all();
}

}  // namespace devicegate::itest

// ---------------------------------------------------------------- fakes and worker
#include "cert_factory.hpp"
#include "devicegate/http.hpp"
#include "devicegate/job.hpp"

namespace devicegate::itest {

fake_backends::fake_backends(std::vector<std::string> extra_args)
    : dir_(test_dir()), tb_port_(free_port()), hb_port_(free_port()), extra_args_(std::move(extra_args)) {}

namespace {
/// The port in "... <name> on http://127.0.0.1:<port>" (devicegate-fakes' start-up line), 0 if absent.
int announced_port(const std::string& log, const std::string& name) {
    const std::string marker = name + " on http://127.0.0.1:";
    const auto at = log.find(marker);
    if (at == std::string::npos) return 0;
    return std::atoi(log.c_str() + at + marker.size());
}
}  // namespace

bool fake_backends::start() {
    // Port 0 on the first start: the fakes bind a port the OS picks and print it.
    std::vector<std::string> argv{DEVICEGATE_FAKES_PATH, "--thingsboard", "127.0.0.1:" + std::to_string(tb_port_),
                                  "--hawkbit", "127.0.0.1:" + std::to_string(hb_port_)};
    argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
    const auto log_path = dir_ / "fakes.log";
    const auto offset = log_size(log_path);
    process_ = std::make_unique<process>(argv, log_path);
    std::string log;
    const bool up = eventually(
        [&] {
            log = log_since(log_path, offset);
            return log.find("fake hawkBit on") != std::string::npos || !process_->running();
        },
        5000ms);
    if (!up || !process_->running()) return false;
    tb_port_ = announced_port(log, "fake ThingsBoard");
    hb_port_ = announced_port(log, "fake hawkBit");
    return tb_port_ > 0 && hb_port_ > 0;
}

nlohmann::json fake_backends::get(const std::string& url) {
    devicegate::http_client http;
    auto r = http.get(url, {});
    if (!r) throw std::runtime_error("GET " + url + ": " + r.error);
    return nlohmann::json::parse(r.body);
}

void fake_backends::post(const std::string& url, const nlohmann::json& body) {
    devicegate::http_client http;
    auto r = http.post(url, body.dump(), "application/json", {});
    if (!r || r.status != 200) throw std::runtime_error("POST " + url + " failed");
}

nlohmann::json fake_backends::thingsboard_device(const std::string& name) const {
    devicegate::http_client http;
    auto r = http.get(thingsboard_url() + "/_fake/devices/" + name, {});
    if (!r || r.status != 200) return nullptr;
    return nlohmann::json::parse(r.body);
}

worker_process::worker_process(const redis_server& redis, const fake_backends& fakes, worker_options o)
    : worker_process(redis.url(), fakes, std::move(o)) {}

worker_process::worker_process(const std::string& redis_url, const fake_backends& fakes, worker_options o)
    : dir_(test_dir()), config_(dir_ / "worker.conf"), log_path_(dir_ / "worker.log"), metrics_port_(free_port()) {
    std::ostringstream conf;
    conf << "# generated by the DeviceGate integration tests\n"
         << "redis_url " << redis_url << "\n"
         << "consumer_name " << o.consumer_name << "\n"
         << "concurrency " << o.concurrency << "\n"
         << "claim_idle " << o.claim_idle << "\n"
         << "max_attempts " << o.max_attempts << "\n"
         << "retry_initial " << o.retry_initial << "\n"
         << "retry_max " << o.retry_max << "\n"
         << "http_timeout 5s\n"
         << "thingsboard_url " << fakes.thingsboard_url() << "\n"
         << "thingsboard_username tenant@thingsboard.org\nthingsboard_password tenant\n"
         << "thingsboard_rule_engine_timeout 500ms\n"
         << "hawkbit_url " << fakes.hawkbit_url() << "\n"
         << "hawkbit_username admin\nhawkbit_password admin\n"
         << "tenant_ca_file " << pki("subca-a.crt") << "\nica_file " << pki("ica.crt") << "\nroot_ca_file "
         << pki("root.crt") << "\n";
    for (const auto& [k, v] : o.extra) conf << k << " " << v << "\n";
    config_text_ = conf.str();
    write_config();
}

void worker_process::write_config() const {
    write_text(config_, config_text_ + "metrics_listen 127.0.0.1:" + std::to_string(metrics_port_) + "\n");
}

bool worker_process::start() {
    for (int attempt = 1;; ++attempt) {
        const auto offset = log_size(log_path_);
        process_ = std::make_unique<process>(
            std::vector<std::string>{DEVICEGATE_WORKER_PATH, "-c", config_.string()}, log_path_);
        // Only this start's lines count: a restarted worker's log holds the last run's "connected".
        const bool up = eventually(
            [&] {
                return log_since(log_path_, offset).find("connected") != std::string::npos || !process_->running();
            },
            5000ms);
        if (up && process_->running()) return true;
        // worker_main: "cannot listen on metrics_listen ..." when the port is taken, then it exits.
        const bool lost_port = !process_->running() &&
                               log_since(log_path_, offset).find("cannot listen on metrics_listen") != std::string::npos;
        if (!lost_port || attempt == port_attempts) return false;
        drop_attempt_log(log_path_, offset);
        metrics_port_ = free_port();
        write_config();
    }
}

void worker_process::signal(int sig) const { process_->signal(sig); }
std::optional<int> worker_process::wait_exit(std::chrono::milliseconds timeout) { return process_->wait_exit(timeout); }
std::string worker_process::log() const { return slurp(log_path_); }
bool worker_process::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const {
    return eventually([&] { return log().find(needle) != std::string::npos; }, timeout);
}

double worker_process::metric(const std::string& name) const {
    devicegate::http_client http;
    auto r = http.get("http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics", {});
    if (!r) return -1;
    std::istringstream in(r.body);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
}

std::vector<injected_job> make_jobs(const std::string& prefix, int count) {
    static const devicegate::test::cert_factory factory(pki("subca-a.crt"), pki("subca-a.key"));
    std::vector<injected_job> out;
    out.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        devicegate::device_certificate c;
        c.device_id = prefix + std::to_string(i);
        c.certificate_pem = factory.issue_pem(c.device_id);
        auto certs = devicegate::parse_certificates(c.certificate_pem, "injected");
        X509* cert = certs.at(0).get();
        auto digest = devicegate::certificate_sha256(cert);
        c.fingerprint_sha256 = devicegate::to_hex(digest.data(), digest.size());
        c.serial_hex = devicegate::serial_hex(X509_get0_serialNumber(cert));
        c.first_seen = 1795000000;
        c.broker_id = "injected";
        out.push_back({c.device_id, c.certificate_pem, devicegate::encode_job(c, devicegate::job_type::first_connect)});
    }
    return out;
}

void inject(const redis_server& redis, const std::vector<std::string>& payloads) {
    devicegate::redis_options o;
    o.port = redis.port();
    devicegate::redis_connection c(o);
    for (std::size_t at = 0; at < payloads.size(); at += 1000) {
        std::vector<std::vector<std::string>> batch;
        for (std::size_t i = at; i < std::min(payloads.size(), at + 1000); ++i) {
            batch.push_back({"XADD", "devicegate:jobs", "*", "type", "first_connect", "job", payloads[i]});
        }
        c.pipeline(batch);
    }
}

}  // namespace devicegate::itest

