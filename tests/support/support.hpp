// Test harness: temporary directories, child processes, a real nats-server
// on a random loopback port, and waiting for conditions with a timeout.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kanban::test {

using namespace std::chrono_literals;

// Polls `condition` until it holds or `timeout` passes; returns its last value.
bool waitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds poll = 20ms);

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    void release() { path_.clear(); }  // keep the directory

private:
    std::string path_;
};

std::string readFile(const std::string& path);
// User + system CPU seconds of all threads of `pid` (/proc/<pid>/stat).
double cpuSeconds(pid_t pid);
void writeFile(const std::string& path, const std::string& text);
std::vector<std::string> readLines(const std::string& path);
// The live (not zombie) child processes of `parent`, from /proc.
std::vector<pid_t> childProcesses(pid_t parent);

// A child process; stdout and stderr go to files. Killed (SIGKILL) and
// reaped on destruction if still running. Only ever signals its own PID.
class Subprocess {
public:
    Subprocess(std::vector<std::string> argv, std::string stdout_path, std::string stderr_path);
    ~Subprocess();
    Subprocess(const Subprocess&) = delete;
    Subprocess& operator=(const Subprocess&) = delete;

    pid_t pid() const { return pid_; }
    bool running();
    void signal(int sig);
    // Waits for exit; the exit code (128+N when killed by signal N), or
    // nullopt on timeout.
    std::optional<int> wait(std::chrono::milliseconds timeout);
    const std::string& stdoutPath() const { return out_; }
    const std::string& stderrPath() const { return err_; }
    // Forget the child: it keeps running after this object is gone.
    void release() { pid_ = -1; }

private:
    pid_t pid_ = -1;
    std::optional<int> status_;
    std::string out_, err_;
};

// Runs a command to completion; returns its exit code (or -1 on timeout)
// and captures stdout and stderr.
struct CommandResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};
CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 60s);

// nats-server -js on 127.0.0.1 with a random port and its own store dir.
class NatsServer {
public:
    NatsServer();  // started
    ~NatsServer();
    int port() const { return port_; }
    std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
    // Graceful stop (SIGTERM), and a restart on the same port and store.
    void stop();
    void start();
    // kill -9: no chance to flush anything (docs/reliability.md F1).
    void kill();
    // SIGSTOP / SIGCONT: a server that keeps its connections but answers nothing.
    void pause();
    void resume();
    // Its JetStream store directory (-sd).
    std::string storeDir() const;
    pid_t pid() const { return proc_ ? proc_->pid() : -1; }

private:
    TempDir dir_;
    std::optional<Subprocess> proc_;
    int port_ = 0;
};

// A JetStream cluster of `size` nats-server nodes on 127.0.0.1: each with
// its own client and cluster port, store directory and server_name
// ("n0", "n1", ...), routes to all the others. Started, with a JetStream
// metadata leader elected, when the constructor returns.
class NatsCluster {
public:
    explicit NatsCluster(int size = 3);
    ~NatsCluster();
    int size() const { return static_cast<int>(nodes_.size()); }
    std::string url(int i) const { return "nats://127.0.0.1:" + std::to_string(nodes_.at(i).client_port); }
    std::vector<std::string> urls() const;
    static std::string name(int i) { return "n" + std::to_string(i); }
    // kill -9 of one node, and its restart on the same ports and store.
    void kill(int i);
    void start(int i);
    bool running(int i) const { return nodes_.at(i).proc.has_value(); }

private:
    struct Node {
        int client_port = 0, cluster_port = 0;
        int starts = 0;
        std::optional<Subprocess> proc;
    };
    std::string form();  // starts the nodes; empty, or why the cluster did not form
    void writeConfig(int i);
    std::string log(int i) const;
    bool waitMetaLeader(int i);
    TempDir dir_;
    int formed_ = 0;  // attempts to form the cluster (names its stores and logs)
    std::vector<Node> nodes_;
};

// A free TCP port on 127.0.0.1 (bound, read, released: for servers that
// cannot pick their own, like RabbitMQ).
int freePort();

// rabbitmq-server on 127.0.0.1 (AMQP and Erlang distribution ports free
// ports, epmd shared), node `kanban-<pid>-<n>@localhost`, data and logs in
// a directory owned by the `rabbitmq` user. Starting takes 5-10 s, so most
// tests share the one the CTest fixture starts per run (sharedRabbit());
// tests that kill or block the broker start their own.
class RabbitServer {
public:
    // In `dir` (created; a temporary directory when empty), with `vhosts`
    // vhosts t0..t<n-1> that guest may use.
    explicit RabbitServer(std::string dir = "", int vhosts = 0);
    ~RabbitServer();  // stops it, unless detach()ed
    RabbitServer(const RabbitServer&) = delete;
    RabbitServer& operator=(const RabbitServer&) = delete;

    int port() const { return port_; }
    const std::string& node() const { return node_; }
    const std::string& dir() const { return dir_; }
    std::string url(const std::string& vhost = "") const;
    void start();
    void stop();  // graceful
    void kill();  // kill -9 of the broker's beam process
    CommandResult ctl(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 60s) const;
    void detach();  // leave it running (the fixture); stopDetached() ends it
    static void stopDetached(const std::string& dir);

private:
    std::optional<TempDir> temp_;
    std::string dir_;
    std::string node_;
    int port_ = 0, dist_port_ = 0;
    std::optional<Subprocess> proc_;
    bool detached_ = false;
};

// A vhost of one's own (fresh, empty) on the broker the CTest fixture
// started for this run; nullopt outside such a run.
inline constexpr int kSharedRabbitVhosts = 200;
struct SharedRabbit {
    std::string url;  // amqp://guest:guest@127.0.0.1:<port>/<vhost>
    std::string node;
    std::string vhost;
};
std::optional<SharedRabbit> sharedRabbit();

}  // namespace kanban::test
