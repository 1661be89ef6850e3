#include "support.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
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
    fs::remove_all(path_, ec);
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void writeFile(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path);
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

void NatsServer::kill() {
    if (!proc_) return;
    proc_->signal(SIGKILL);
    proc_->wait(10s);
    proc_.reset();
}

NatsServer::~NatsServer() { stop(); }

}  // namespace kanban::test
