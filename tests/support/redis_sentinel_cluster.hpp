#pragma once
// A real Redis Sentinel deployment for tests, on loopback: one master, one replica and N
// sentinels (redis-server --sentinel), each its own process on a free port with its files in a
// temporary directory; everything is SIGKILLed when the object goes. Unit and integration
// tests both include it (tests/support):
//
//     test::sentinel_cluster cluster;              // master + replica + 3 sentinels, ready
//     redis_connection c(redis_options::parse_url(cluster.url()));
//     cluster.kill_master();                       // SIGKILL, like a crash
//     auto now = cluster.wait_failover();          // the replica, promoted (~4 s)
//
// Sentinel timing: down-after-milliseconds 1000 (a dead master is "subjectively down" after
// 1 s, then the quorum agrees and one sentinel promotes the replica: ~4 s on loopback);
// failover-timeout 5000 so that a failed election is retried after 10 s, not 6 minutes
// (the retry waits twice the failover timeout; Redis's sentinel.c).
#include "devicegate/redis.hpp"
#include "redis_process.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace devicegate::test {

struct sentinel_cluster_options {
    std::size_t sentinels = 3;
    std::string master_name = "mymaster";
    std::string password;           // requirepass and masterauth on both data nodes ("" = none)
    std::string sentinel_password;  // requirepass on the sentinels ("" = none)
    int down_after_ms = 1000;
};

/// One redis-server child (a data node or a sentinel), SIGKILLed when it goes.
class redis_child {
public:
    explicit redis_child(std::vector<std::string> args) : args_(std::move(args)) {
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            std::vector<char*> argv;
            for (auto& a : args_) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execvp("redis-server", argv.data());
            ::_exit(127);
        }
    }
    ~redis_child() { kill(); }
    redis_child(const redis_child&) = delete;
    redis_child& operator=(const redis_child&) = delete;

    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    void signal(int sig) const {
        if (pid_ > 0) ::kill(pid_, sig);
    }
    bool exited() {
        if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
        return pid_ <= 0;
    }

private:
    std::vector<std::string> args_;
    pid_t pid_ = -1;
};

class sentinel_cluster {
public:
    using clock = std::chrono::steady_clock;

    explicit sentinel_cluster(sentinel_cluster_options o = {}) : o_(std::move(o)) {
        std::random_device rd;
        dir_ = std::filesystem::temp_directory_path() / ("devicegate-sentinel-" + std::to_string(rd()));
        std::filesystem::create_directories(dir_);
        const int master = start_data_node(0);
        start_data_node(master);
        wait_until("the replica in sync", [&] { return replica_linked(); });
        // The replica says its link is up a moment before the master counts it as online
        // (after its first acknowledgement): tests that WAIT need the master's view.
        wait_until("the master to list the replica", [&] { return master_lists_replica(); });
        for (std::size_t i = 0; i < o_.sentinels; ++i) start_sentinel(master);
        // Discovery works from here on. A failover needs more (the sentinels must know the
        // replica and each other, which takes seconds): kill_master() and failover() wait for it.
    }
    ~sentinel_cluster() {
        nodes_.clear();
        sentinels_.clear();
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    sentinel_cluster(const sentinel_cluster&) = delete;
    sentinel_cluster& operator=(const sentinel_cluster&) = delete;

    /// redis-sentinel://[:password@]127.0.0.1:p1,...,/master_name[/db][?sentinel_password=P]
    std::string url(int db = 0) const {
        std::string out = "redis-sentinel://";
        if (!o_.password.empty()) out += ":" + o_.password + "@";
        for (std::size_t i = 0; i < sentinel_ports_.size(); ++i) {
            out += (i ? "," : "") + std::string("127.0.0.1:") + std::to_string(sentinel_ports_[i]);
        }
        out += "/" + o_.master_name;
        if (db != 0) out += "/" + std::to_string(db);
        if (!o_.sentinel_password.empty()) out += "?sentinel_password=" + o_.sentinel_password;
        return out;
    }
    /// url() parsed, with short timeouts (a dead node is noticed quickly).
    redis_options options(int db = 0) const {
        auto o = redis_options::parse_url(url(db));
        o.connect_timeout = std::chrono::milliseconds(500);
        o.command_timeout = std::chrono::milliseconds(1000);
        o.sentinel_timeout = std::chrono::milliseconds(300);
        return o;
    }
    /// The data node that is master now (as the last start, kill or failover left it).
    int master_port() const { return master_port_; }
    /// The other data node (the replica, or the dead old master after kill_master()).
    int replica_port() const { return replica_port_; }
    const std::vector<int>& sentinel_ports() const { return sentinel_ports_; }
    /// Plain options for one data node (for looking at it directly).
    redis_options node_options(int port) const {
        redis_options o;
        o.port = port;
        o.password = o_.password;
        o.connect_timeout = std::chrono::milliseconds(500);
        o.command_timeout = std::chrono::milliseconds(1000);
        return o;
    }
    /// Options for one sentinel (its own password, if any).
    redis_options sentinel_options(int port, std::chrono::milliseconds timeout = std::chrono::milliseconds(300)) const {
        redis_options o;
        o.port = port;
        o.password = o_.sentinel_password;
        o.connect_timeout = o.command_timeout = timeout;
        return o;
    }
    redis_reply_ptr node_command(int port, const std::vector<std::string>& argv) const {
        redis_connection c(node_options(port));
        return c.command(argv);
    }
    /// The master as `sentinel_port` names it; nullopt if unreachable or unknown.
    std::optional<int> sentinel_master_port(int sentinel_port) const {
        try {
            redis_connection c(sentinel_options(sentinel_port));
            auto r = c.command({"SENTINEL", "get-master-addr-by-name", o_.master_name});
            if (is_nil(r.get())) return std::nullopt;
            return std::stoi(reply_string(reply_array(r.get(), "SENTINEL", 2)[1], "port"));
        } catch (const std::exception&) {
            return std::nullopt;
        }
    }

    /// SIGKILL of the master, like a crash; it stays dead.
    void kill_master() {
        wait_ready_for_failover();
        nodes_.at(master_port_)->kill();
    }
    /// SIGSTOP / SIGCONT of the replica (it stays connected but acknowledges nothing).
    void pause_replica(bool paused) { nodes_.at(replica_port_)->signal(paused ? SIGSTOP : SIGCONT); }
    /// SIGKILL of the replica.
    void kill_replica() { nodes_.at(replica_port_)->kill(); }
    /// SENTINEL FAILOVER: the replica is promoted without agreement, the old master stays up
    /// and is demoted to a replica of the new one (it then answers writes with READONLY).
    void failover() {
        wait_ready_for_failover();
        redis_connection c(sentinel_options(sentinel_ports_.at(0), std::chrono::milliseconds(2000)));
        expect_ok(c.command({"SENTINEL", "FAILOVER", o_.master_name}).get(), "SENTINEL FAILOVER");
    }
    /// Waits until every sentinel names the other data node and it says ROLE master; returns
    /// its port (then master_port()). Throws after `timeout`.
    int wait_failover(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        const int old_master = master_port_, candidate = replica_port_;
        wait_until("the failover", [&] {
            for (int s : sentinel_ports_) {
                if (sentinel_master_port(s) != candidate) return false;
            }
            return role_of(candidate) == "master";
        }, timeout);
        master_port_ = candidate;
        replica_port_ = old_master;
        return master_port_;
    }
    /// After failover(): waits until the old master follows the new one (its link is up).
    void wait_demoted(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        wait_until("the old master to follow the new one", [&] { return replica_linked(); }, timeout);
    }
    /// ROLE's first element ("master", "slave"), "" if the node does not answer.
    std::string role_of(int port) const {
        try {
            auto r = node_command(port, {"ROLE"});
            return reply_string(reply_array(r.get(), "ROLE")[0], "ROLE");
        } catch (const std::exception&) {
            return "";
        }
    }

private:
    template <class F>
    static void wait_until(const std::string& what, F&& done, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        if (!eventually(std::forward<F>(done), timeout)) throw std::runtime_error("sentinel_cluster: timed out waiting for " + what);
    }

    /// Starts a data node (a replica of `master_port` unless 0) and returns its port.
    int start_data_node(int master_port) {
        for (int attempt = 0; attempt < 5; ++attempt) {
            const int port = redis_process::unused_port();
            const std::string name = "node-" + std::to_string(port);
            std::vector<std::string> args{"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1",
                                          "--dir", dir_.string(), "--dbfilename", name + ".rdb", "--save", "",
                                          "--appendonly", "no", "--logfile", (dir_ / (name + ".log")).string(),
                                          // Redis 7 waits 5 s for more replicas before a diskless full sync.
                                          "--repl-diskless-sync-delay", "0"};
            if (!o_.password.empty()) args.insert(args.end(), {"--requirepass", o_.password, "--masterauth", o_.password});
            if (master_port != 0) args.insert(args.end(), {"--replicaof", "127.0.0.1", std::to_string(master_port)});
            if (launch(port, std::move(args), nodes_)) {
                (master_port == 0 ? master_port_ : replica_port_) = port;
                return port;
            }
        }
        throw std::runtime_error("sentinel_cluster: redis-server did not start (is it installed?)");
    }

    void start_sentinel(int master_port) {
        for (int attempt = 0; attempt < 5; ++attempt) {
            const int port = redis_process::unused_port();
            const auto conf = dir_ / ("sentinel-" + std::to_string(port) + ".conf");
            std::ofstream f(conf);
            f << "port " << port << "\nbind 127.0.0.1\ndir " << dir_.string() << "\nlogfile " << (dir_ / ("sentinel-" + std::to_string(port) + ".log")).string()
              << "\nsentinel monitor " << o_.master_name << " 127.0.0.1 " << master_port << " " << (o_.sentinels / 2 + 1)
              << "\nsentinel down-after-milliseconds " << o_.master_name << " " << o_.down_after_ms
              << "\nsentinel failover-timeout " << o_.master_name << " 5000"
              << "\nsentinel parallel-syncs " << o_.master_name << " 1\n";
            if (!o_.password.empty()) f << "sentinel auth-pass " << o_.master_name << " " << o_.password << "\n";
            if (!o_.sentinel_password.empty()) f << "requirepass " << o_.sentinel_password << "\n";
            f.close();
            if (launch(port, {"redis-server", conf.string(), "--sentinel"}, sentinels_)) {
                sentinel_ports_.push_back(port);
                return;
            }
        }
        throw std::runtime_error("sentinel_cluster: redis-sentinel did not start");
    }

    /// true once the process on `port` answers (any reply: AUTH may be required).
    static bool launch(int port, std::vector<std::string> args, std::map<int, std::unique_ptr<redis_child>>& into) {
        auto child = std::make_unique<redis_child>(std::move(args));
        redis_options o;
        o.port = port;
        o.connect_timeout = o.command_timeout = std::chrono::milliseconds(300);
        const bool up = eventually([&] {
            if (child->exited()) return true;
            try {
                redis_connection(o).command({"PING"});
                return true;
            } catch (const std::exception&) {
                return false;
            }
        });
        if (!up || child->exited()) return false;
        into[port] = std::move(child);
        return true;
    }

    bool replica_linked() const {
        try {
            auto info = reply_string(node_command(replica_port_, {"INFO", "replication"}).get(), "INFO");
            if (info.find("master_link_status:up") == std::string::npos) return false;
            // The replica says "up" a moment before the master counts it as online (after its
            // first REPLCONF ACK); ROLE and WAIT on the master only see it from then on.
            auto master = reply_string(node_command(master_port_, {"INFO", "replication"}).get(), "INFO");
            return master.find("port=" + std::to_string(replica_port_) + ",state=online") != std::string::npos;
        } catch (const std::exception&) {
            return false;
        }
    }

    bool master_lists_replica() const {
        try {
            auto info = reply_string(node_command(master_port_, {"INFO", "replication"}).get(), "INFO");
            return info.find("state=online") != std::string::npos;
        } catch (const std::exception&) {
            return false;
        }
    }

    void wait_ready_for_failover() {
        wait_until("the sentinels to know each other and the replica", [&] { return sentinels_ready(); });
    }

    /// Every sentinel knows the replica and the other sentinels (else no failover can happen).
    bool sentinels_ready() const {
        for (int s : sentinel_ports_) {
            try {
                redis_connection c(sentinel_options(s));
                auto master = reply_hash(c.command({"SENTINEL", "MASTER", o_.master_name}).get(), "SENTINEL MASTER");
                if (master["num-slaves"] != "1" || master["num-other-sentinels"] != std::to_string(o_.sentinels - 1)) return false;
            } catch (const std::exception&) {
                return false;
            }
        }
        return true;
    }

    sentinel_cluster_options o_;
    std::filesystem::path dir_;
    std::map<int, std::unique_ptr<redis_child>> nodes_;
    std::map<int, std::unique_ptr<redis_child>> sentinels_;
    std::vector<int> sentinel_ports_;
    int master_port_ = 0;
    int replica_port_ = 0;
};

}  // namespace devicegate::test
