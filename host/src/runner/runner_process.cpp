#include "runner/runner_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
extern "C" {  // glibc 2.36 declares these without C linkage for C++
#include <sys/pidfd.h>
}
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

extern char** environ;

namespace kanban::host::runner {
namespace {

std::string sysError(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Moved out of the way of the runner's fixed descriptors (3, 4).
int highCloexec(int fd) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 100);
    ::close(fd);
    return moved;
}

// The environment minus what belongs to kanband's service manager: a
// runner must not notify systemd or take its sockets.
std::vector<std::string> runnerEnvironment() {
    static constexpr std::string_view kDropped[] = {"NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=", "LISTEN_FDS=",
                                                    "LISTEN_PID=", "LISTEN_FDNAMES=", "CREDENTIALS_DIRECTORY="};
    std::vector<std::string> env;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        const std::string_view v(*e);
        bool drop = false;
        for (auto d : kDropped) drop = drop || v.rfind(d, 0) == 0;
        if (!drop) env.emplace_back(v);
    }
    return env;
}

}  // namespace

std::string ExitInfo::describe() const {
    if (!signaled) return "exit status " + std::to_string(code);
    const char* abbrev = sigabbrev_np(code);
    return "signal " + std::to_string(code) + (abbrev != nullptr ? std::string(" (SIG") + abbrev + ")" : "");
}

Result<std::unique_ptr<RunnerProcess>> RunnerProcess::spawn(const RunnerSpec& spec,
                                                           std::chrono::milliseconds ready_within) {
    std::unique_ptr<RunnerProcess> p(new RunnerProcess());
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return Error{sysError("socketpair")};
    p->sock_ = highCloexec(sv[0]);
    const int child_sock = highCloexec(sv[1]);
    const int mem = highCloexec(::memfd_create("kanban-runner", MFD_CLOEXEC));
    struct Closer {
        int a, b;
        ~Closer() {
            if (a >= 0) ::close(a);
            if (b >= 0) ::close(b);
        }
    } closer{child_sock, mem};
    if (p->sock_ < 0 || child_sock < 0 || mem < 0) return Error{sysError("runner descriptors")};
    if (::ftruncate(mem, sizeof(Shared)) != 0) return Error{sysError("ftruncate")};
    void* map = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, mem, 0);
    if (map == MAP_FAILED) return Error{sysError("mmap")};
    p->shared_ = static_cast<Shared*>(map);  // zero-filled by the kernel

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, child_sock, kSocketFd);
    posix_spawn_file_actions_adddup2(&fa, mem, kSharedFd);
    posix_spawn_file_actions_addclosefrom_np(&fa, kSharedFd + 1);  // nothing else of kanband's
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::string flag(kRunnerFlag);
    std::string exe = spec.exe;
    std::vector<char*> argv{exe.data(), flag.data(), nullptr};
    auto env = runnerEnvironment();
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const int rc = ::posix_spawn(&p->pid_, spec.exe.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        p->pid_ = -1;
        errno = rc;
        return Error{sysError("cannot start a runner process")};
    }
    p->pidfd_ = ::pidfd_open(p->pid_, 0);
    p->reader_ = std::make_unique<FrameReader>(p->sock_);
    ::fcntl(p->sock_, F_SETFL, ::fcntl(p->sock_, F_GETFL) | O_NONBLOCK);

    p->out_ = frame(FrameType::hello, encodeStrings({spec.domain, spec.plugin_path, spec.settings_json, spec.log_level}));
    p->out_done_ = 0;
    const auto until = std::chrono::steady_clock::now() + ready_within;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            p->kill();
            return Error{"the runner's plugin did not load and create within " + std::to_string(ready_within.count()) +
                         " ms (killed)"};
        }
        if (p->pump(std::min(left, std::chrono::milliseconds(100))) == Event::died) {
            const ExitInfo e = p->reap();
            return Error{"the runner process ended (" + e.describe() + ") while loading the plugin"};
        }
        auto got = p->reader_->poll();
        if (!got || !*got) continue;
        auto [type, body] = p->reader_->take();
        auto parts = decodeStrings(body, type == FrameType::ready ? 2 : 1);
        if (!parts) return Error{"the runner answered: " + parts.message()};
        if (type == FrameType::failed) {
            p->retire(std::chrono::milliseconds(1000));
            return Error{(*parts)[0]};
        }
        p->name_ = (*parts)[0];
        p->version_ = (*parts)[1];
        return p;
    }
}

RunnerProcess::~RunnerProcess() {
    if (pid_ > 0 && !reaped_) kill();
    if (shared_ != nullptr) ::munmap(shared_, sizeof(Shared));
    if (sock_ >= 0) ::close(sock_);
    if (pidfd_ >= 0) ::close(pidfd_);
}

void RunnerProcess::begin(const BatchHeader& header, const std::vector<WireItem>& items) {
    Shared& s = *shared_;
    s.current.store(0);
    s.completed.store(0);
    s.progress.store(0);
    s.retire.store(0);
    s.stop.store(0);
    s.cancel.store(0);
    for (std::size_t i = 0; i < items.size(); ++i) s.results[i].state.store(static_cast<std::uint32_t>(ItemState::pending));
    out_.erase(0, out_done_);
    out_done_ = 0;
    out_ += frame(FrameType::batch, encodeBatch(header, items));
    follow_ups_.clear();
    batch_done_ = false;
}

bool RunnerProcess::readFrames() {
    for (;;) {
        auto got = reader_->poll();
        if (!got) return false;  // closed: it ended (or is ending); whole frames before that were read
        if (!*got) return true;
        auto [type, body] = reader_->take();
        if (type == FrameType::batch_done) {
            batch_done_ = true;
        } else if (type == FrameType::follow_ups) {
            auto f = decodeFollowUps(body);
            if (f) follow_ups_[f->first] = std::move(f->second);
            else spdlog::error("runner pid={}: {}", pid_, f.message());
        }
    }
}

std::vector<plugin::FollowUp> RunnerProcess::takeFollowUps(std::size_t index) {
    if (follow_ups_.count(index) == 0) readFrames();
    auto it = follow_ups_.find(index);
    if (it == follow_ups_.end()) return {};
    auto out = std::move(it->second);
    follow_ups_.erase(it);
    return out;
}

RunnerProcess::Event RunnerProcess::pump(std::chrono::milliseconds wait) {
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
        pollfd fds[2] = {{sock_, static_cast<short>(POLLIN | (out_done_ < out_.size() ? POLLOUT : 0)), 0},
                         {pidfd_, POLLIN, 0}};
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        const int n = ::poll(fds, pidfd_ >= 0 ? 2 : 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
        if (n < 0 && errno != EINTR) return Event::none;
        if (n <= 0) {
            if (left.count() <= 0) return Event::none;
            continue;
        }
        if ((fds[0].revents & POLLOUT) != 0) {
            const ssize_t w = ::send(sock_, out_.data() + out_done_, out_.size() - out_done_, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) out_done_ += static_cast<std::size_t>(w);
            if (out_done_ == out_.size()) {
                out_.clear();
                out_done_ = 0;
            }
        }
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            // Before Ready, spawn() takes the frame itself.
            if (name_.empty()) {
                auto got = reader_->poll();
                if (!got) return Event::died;
                if (*got) return Event::none;
            } else {
                const bool open = readFrames();
                if (batch_done_) {
                    batch_done_ = false;
                    return Event::done;
                }
                if (!open) return Event::died;  // closed: it ended (or is ending)
            }
        }
        if (fds[1].revents != 0) return Event::died;
        if (std::chrono::steady_clock::now() >= until) return Event::none;
    }
}

ExitInfo RunnerProcess::reap() {
    if (reaped_ || pid_ <= 0) return exit_;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    if (WIFSIGNALED(status)) exit_ = {true, WTERMSIG(status)};
    else exit_ = {false, WEXITSTATUS(status)};
    return exit_;
}

ExitInfo RunnerProcess::kill() {
    if (!reaped_ && pid_ > 0) {
        if (pidfd_ >= 0) ::pidfd_send_signal(pidfd_, SIGKILL, nullptr, 0);
        else ::kill(pid_, SIGKILL);
    }
    return reap();
}

bool RunnerProcess::waitExit(std::chrono::milliseconds wait) {
    if (pidfd_ < 0) return false;
    pollfd fd{pidfd_, POLLIN, 0};
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        const int n = ::poll(&fd, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
        if (n > 0) return true;
        if (n == 0 || errno != EINTR) return false;
    }
}

void RunnerProcess::retire(std::chrono::milliseconds grace) {
    if (reaped_ || pid_ <= 0) return;
    const std::string quit = frame(FrameType::quit, {});
    (void)::send(sock_, quit.data(), quit.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (waitExit(grace)) {
        reap();
        return;
    }
    kill();
}

}  // namespace kanban::host::runner
