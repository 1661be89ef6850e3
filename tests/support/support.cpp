#include "support.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>
#include <stdexcept>
#include <thread>

namespace kanban::test {

namespace fs = std::filesystem;

bool waitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds poll) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= end) return condition();
        std::this_thread::sleep_for(poll);
    }
}

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/kanban-test-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
}
TempDir::~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

double cpuSeconds(pid_t pid) {
    const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    std::istringstream f(stat.substr(stat.rfind(')') + 2));  // fields from 3 on
    std::vector<std::string> v{std::istream_iterator<std::string>(f), {}};
    return (std::stod(v.at(11)) + std::stod(v.at(12))) / static_cast<double>(::sysconf(_SC_CLK_TCK));  // 14, 15
}

void writeFile(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
}

std::vector<pid_t> childProcesses(pid_t parent) {
    std::vector<pid_t> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
        const std::string name = e.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream st(e.path() / "stat");
        std::string line;
        if (!std::getline(st, line)) continue;
        const auto close = line.rfind(')');  // the command may contain spaces and parentheses
        if (close == std::string::npos) continue;
        char state = 0;
        int ppid = 0;
        if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) continue;
        if (ppid == parent && state != 'Z') out.push_back(std::stoi(name));
    }
    return out;
}

std::vector<std::string> readLines(const std::string& path) {
    std::vector<std::string> lines;
    std::istringstream in(readFile(path));
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) lines.push_back(line);
    return lines;
}

Subprocess::Subprocess(std::vector<std::string> argv, std::string stdout_path, std::string stderr_path)
    : out_(std::move(stdout_path)), err_(std::move(stderr_path)) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        const int in = ::open("/dev/null", O_RDONLY);
        const int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || e < 0) ::_exit(126);
        ::dup2(in, 0);
        ::dup2(o, 1);
        ::dup2(e, 2);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
}

Subprocess::~Subprocess() {
    if (running()) {
        signal(SIGKILL);
        wait(5s);
    }
}

bool Subprocess::running() {
    if (status_ || pid_ <= 0) return false;
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return !status_;
}

void Subprocess::signal(int sig) {
    if (running()) ::kill(pid_, sig);
}

std::optional<int> Subprocess::wait(std::chrono::milliseconds timeout) {
    waitFor([this] { return !running(); }, timeout, 5ms);
    return status_;
}

CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
    TempDir dir;
    CommandResult r;
    {
        Subprocess p(argv, dir.file("out"), dir.file("err"));
        r.exit_code = p.wait(timeout).value_or(-1);
    }
    r.out = readFile(dir.file("out"));
    r.err = readFile(dir.file("err"));
    return r;
}

NatsServer::NatsServer() { start(); }

void NatsServer::start() {
    // Port -1 = any free port (no race between picking and binding); a
    // restart reuses the port it got.
    const std::string port = port_ == 0 ? "-1" : std::to_string(port_);
    proc_.reset();
    proc_.emplace(std::vector<std::string>{"nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd",
                                           dir_.file("store"), "--ports_file_dir", dir_.path()},
                  dir_.file("nats.out"), dir_.file("nats.log"));
    const std::string ports = dir_.file("nats-server_" + std::to_string(proc_->pid()) + ".ports");
    const bool up = waitFor(
        [&] {
            if (!fs::exists(ports)) return false;
            try {
                const auto j = nlohmann::json::parse(readFile(ports));
                const std::string url = j.at("nats").at(0).get<std::string>();
                port_ = std::stoi(url.substr(url.rfind(':') + 1));
                return port_ > 0;
            } catch (const std::exception&) {
                return false;  // file not completely written yet
            }
        },
        10s);
    if (!up) throw std::runtime_error("nats-server did not start: " + readFile(dir_.file("nats.log")));
}

void NatsServer::stop() {
    if (!proc_) return;
    proc_->signal(SIGTERM);
    if (!proc_->wait(10s)) proc_->signal(SIGKILL);
    proc_.reset();
}

std::string NatsServer::storeDir() const { return dir_.file("store"); }

void NatsServer::pause() {
    if (proc_) proc_->signal(SIGSTOP);
}

void NatsServer::resume() {
    if (proc_) proc_->signal(SIGCONT);
}

void NatsServer::kill() {
    if (!proc_) return;
    proc_->signal(SIGKILL);
    proc_->wait(10s);
    proc_.reset();
}

NatsServer::~NatsServer() { stop(); }

NatsCluster::NatsCluster(int size) : nodes_(static_cast<std::size_t>(size)) {
    // Under heavy CPU load (a sanitizer run with other tests beside it)
    // nats-server 2.9 once formed every route and then elected no JetStream
    // metadata leader for 20 s. Such a cluster is stopped and formed
    // again, once, on new ports with new stores.
    std::string why;
    for (int attempt = 0; attempt < 2; ++attempt) {
        why = form();
        if (why.empty()) return;
        for (auto& n : nodes_) {
            if (n.proc) n.proc->signal(SIGKILL);
            if (n.proc) n.proc->wait(10s);
            n.proc.reset();
        }
    }
    throw std::runtime_error(why);
}

std::string NatsCluster::form() {
    ++formed_;
    for (auto& n : nodes_) {
        n.client_port = freePort();
        n.cluster_port = freePort();
        n.starts = 0;
    }
    for (int i = 0; i < size(); ++i) writeConfig(i);
    // One after the other, each once it listens for routes.
    for (int i = 0; i < size(); ++i) {
        nodes_[i].proc.emplace(std::vector<std::string>{"nats-server", "-c", dir_.file(name(i) + ".conf")},
                               dir_.file(name(i) + ".out"), log(i));
        if (!waitFor([&] { return readFile(log(i)).find("Listening for route connections") != std::string::npos; }, 10s))
            return "nats cluster: " + name(i) + " did not start: " + readFile(log(i));
    }
    for (int i = 0; i < size(); ++i)
        if (!waitMetaLeader(i)) return "nats cluster: " + name(i) + " did not join: " + readFile(log(i));
    return "";
}

NatsCluster::~NatsCluster() {
    for (auto& n : nodes_) {
        if (!n.proc) continue;
        n.proc->signal(SIGTERM);
        if (!n.proc->wait(10s)) n.proc->signal(SIGKILL);
    }
}

std::vector<std::string> NatsCluster::urls() const {
    std::vector<std::string> out;
    for (int i = 0; i < size(); ++i) out.push_back(url(i));
    return out;
}

void NatsCluster::writeConfig(int i) {
    // Routes to the others only: a route to itself plus every node dialling
    // every other at the same instant can leave nats-server 2.9 closing
    // "duplicate" routes in a loop, never forming the cluster.
    std::string routes;
    for (int j = 0; j < size(); ++j)
        if (j != i)
            routes += (routes.empty() ? "" : ", ") + std::string("nats-route://127.0.0.1:") +
                      std::to_string(nodes_[j].cluster_port);
    writeFile(dir_.file(name(i) + ".conf"),
              "server_name: " + name(i) + "\nlisten: 127.0.0.1:" + std::to_string(nodes_[i].client_port) +
                  "\njetstream { store_dir: \"" + dir_.file(name(i) + "-" + std::to_string(formed_) + "-store") + "\" }\n" +
                  "cluster {\n  name: kanban-test\n  listen: 127.0.0.1:" + std::to_string(nodes_[i].cluster_port) +
                  "\n  routes: [" + routes + "]\n}\n");
}

std::string NatsCluster::log(int i) const {
    return dir_.file(name(i) + "-" + std::to_string(formed_) + "-" + std::to_string(nodes_.at(i).starts) + ".log");
}

// The node knows the JetStream metadata leader (itself or another): it can
// serve JetStream requests.
bool NatsCluster::waitMetaLeader(int i) {
    return waitFor([&] { return readFile(log(i)).find("metadata leader") != std::string::npos; }, 20s);
}

void NatsCluster::kill(int i) {
    auto& n = nodes_.at(i);
    if (!n.proc) return;
    n.proc->signal(SIGKILL);
    n.proc->wait(10s);
    n.proc.reset();
}

void NatsCluster::start(int i) {
    auto& n = nodes_.at(i);
    if (n.proc) return;
    ++n.starts;  // a log file per start: the new one holds only this start's lines
    n.proc.emplace(std::vector<std::string>{"nats-server", "-c", dir_.file(name(i) + ".conf")},
                   dir_.file(name(i) + ".out"), log(i));
    if (!waitMetaLeader(i)) throw std::runtime_error("nats cluster: " + name(i) + " did not rejoin: " + readFile(log(i)));
}

}  // namespace kanban::test

namespace kanban::test {
namespace {

std::optional<pid_t> readPid(const std::string& path) {
    try {
        const std::string s = readFile(path);
        const long v = std::stol(s);
        return v > 0 ? std::optional<pid_t>(static_cast<pid_t>(v)) : std::nullopt;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

void chownToRabbit(const std::string& path) {
    const passwd* pw = ::getpwnam("rabbitmq");
    if (pw == nullptr) throw std::runtime_error("no user rabbitmq (is rabbitmq-server installed?)");
    for (const auto& e : fs::recursive_directory_iterator(path))
        if (::chown(e.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown " + e.path().string());
    if (::chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown " + path);
}

CommandResult rabbitmqctl(const std::string& node, const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
    std::vector<std::string> argv{"rabbitmqctl", "-q", "-n", node};
    argv.insert(argv.end(), args.begin(), args.end());
    return runCommand(argv, timeout);
}

}  // namespace

int freePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
        throw std::runtime_error("cannot find a free port");
    ::close(fd);
    return ntohs(a.sin_port);
}

RabbitServer::RabbitServer(std::string dir, int vhosts) {
    static std::atomic<int> counter{0};
    if (dir.empty()) {
        temp_.emplace();
        dir = temp_->path();
    }
    // The rabbitmq user must reach its directories.
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                             fs::perms::others_read | fs::perms::others_exec);
    dir_ = dir + "/rabbitmq";
    fs::create_directories(dir_ + "/mnesia");
    fs::create_directories(dir_ + "/log");
    node_ = "kanban-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "@localhost";
    port_ = freePort();
    dist_port_ = freePort();
    writeFile(dir_ + "/enabled_plugins", "[].\n");
    writeFile(dir_ + "/rabbitmq-env.conf", "");
    writeFile(dir_ + "/rabbitmq.conf", "loopback_users.guest = true\n");
    nlohmann::json defs{{"vhosts", nlohmann::json::array()}, {"permissions", nlohmann::json::array()}};
    for (int i = 0; i < vhosts; ++i) {
        const std::string v = "t" + std::to_string(i);
        defs["vhosts"].push_back({{"name", v}});
        defs["permissions"].push_back({{"user", "guest"}, {"vhost", v}, {"configure", ".*"}, {"write", ".*"}, {"read", ".*"}});
    }
    writeFile(dir_ + "/definitions.json", defs.dump());
    chownToRabbit(dir_);
    start();
    if (vhosts > 0) {
        auto r = ctl({"import_definitions", dir_ + "/definitions.json"});
        if (r.exit_code != 0) throw std::runtime_error("rabbitmqctl import_definitions: " + r.err + r.out);
    }
}

RabbitServer::~RabbitServer() {
    if (!detached_) stop();
}

std::string RabbitServer::url(const std::string& vhost) const {
    return "amqp://guest:guest@127.0.0.1:" + std::to_string(port_) + (vhost.empty() ? "" : "/" + vhost);
}

CommandResult RabbitServer::ctl(const std::vector<std::string>& args, std::chrono::milliseconds timeout) const {
    return rabbitmqctl(node_, args, timeout);
}

void RabbitServer::start() {
    proc_.reset();
    std::vector<std::string> argv{"env",
                                  "RABBITMQ_NODENAME=" + node_,
                                  "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
                                  "RABBITMQ_NODE_PORT=" + std::to_string(port_),
                                  "RABBITMQ_DIST_PORT=" + std::to_string(dist_port_),
                                  // the distribution port on loopback too (it listens on all addresses otherwise)
                                  "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
                                  "RABBITMQ_MNESIA_BASE=" + dir_ + "/mnesia",
                                  "RABBITMQ_LOG_BASE=" + dir_ + "/log",
                                  "RABBITMQ_PID_FILE=" + dir_ + "/pid",
                                  "RABBITMQ_ENABLED_PLUGINS_FILE=" + dir_ + "/enabled_plugins",
                                  "RABBITMQ_CONF_ENV_FILE=" + dir_ + "/rabbitmq-env.conf",
                                  "RABBITMQ_CONFIG_FILE=" + dir_ + "/rabbitmq",
                                  "setsid",
                                  "rabbitmq-server"};
    proc_.emplace(argv, dir_ + "/server.out", dir_ + "/server.err");
    // await_startup fails at once until the node has registered with epmd.
    const bool up = waitFor(
        [&] {
            if (!proc_->running()) return true;  // reported below
            return ctl({"await_startup", "--timeout", "30"}, 40s).exit_code == 0;
        },
        60s, 200ms);
    if (!up || !proc_->running())
        throw std::runtime_error("rabbitmq-server did not start: " + readFile(dir_ + "/server.out") +
                                 readFile(dir_ + "/server.err"));
    writeFile(dir_ + "/env", node_ + " " + std::to_string(port_) + "\n");
}

void RabbitServer::stop() {
    const auto beam = readPid(dir_ + "/pid");
    ctl({"stop"}, 30s);
    if (beam) {
        waitFor([&] { return !alive(*beam); }, 15s, 50ms);
        if (alive(*beam)) ::kill(*beam, SIGKILL);
    }
    if (proc_) proc_->wait(10s);
}

void RabbitServer::kill() {
    const auto beam = readPid(dir_ + "/pid");
    if (!beam) throw std::runtime_error("rabbitmq-server: no pid file");
    ::kill(*beam, SIGKILL);
    waitFor([&] { return !alive(*beam); }, 10s, 20ms);
    if (proc_) proc_->wait(10s);
}

void RabbitServer::detach() {
    detached_ = true;
    if (proc_) proc_->release();
    if (temp_) temp_->release();
}

void RabbitServer::stopDetached(const std::string& dir) {
    const std::string d = dir + "/rabbitmq";
    std::istringstream env(readFile(d + "/env"));
    std::string node;
    env >> node;
    const auto beam = readPid(d + "/pid");
    if (!node.empty()) rabbitmqctl(node, {"stop"}, 30s);
    if (beam) {
        waitFor([&] { return !alive(*beam); }, 15s, 50ms);
        if (alive(*beam)) ::kill(*beam, SIGKILL);
    }
}

std::optional<SharedRabbit> sharedRabbit() {
    const char* dir = std::getenv("KANBAN_TEST_RABBITMQ_DIR");
    if (dir == nullptr || *dir == '\0') return std::nullopt;
    const std::string d = std::string(dir) + "/rabbitmq";
    std::istringstream env(readFile(d + "/env"));
    SharedRabbit r;
    int port = 0;
    env >> r.node >> port;
    if (r.node.empty() || port <= 0) return std::nullopt;
    // Each test takes the next vhost: parallel tests never share queues.
    const int fd = ::open((std::string(dir) + "/vhost.counter").c_str(), O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX) != 0) throw std::runtime_error("cannot lock the vhost counter");
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    const int next = n > 0 ? std::atoi(buf) : 0;
    const std::string updated = std::to_string(next + 1);
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, updated.data(), updated.size(), 0) < 0)
        throw std::runtime_error("cannot write the vhost counter");
    ::flock(fd, LOCK_UN);
    ::close(fd);
    if (next >= kSharedRabbitVhosts) throw std::runtime_error("the shared RabbitMQ has no vhost left; raise kSharedRabbitVhosts");
    r.vhost = "t" + std::to_string(next);
    r.url = "amqp://guest:guest@127.0.0.1:" + std::to_string(port) + "/" + r.vhost;
    return r;
}

}  // namespace kanban::test
