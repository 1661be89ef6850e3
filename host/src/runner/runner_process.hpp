// kanband's side of one runner process (isolation = "process"): start it
// (the kanband binary itself, in runner mode), hand it batches, watch it,
// and end it: asked (it calls destroy()), or killed.
//
// Hygiene: the runner gets only its socket and its shared memory (every
// other descriptor is closed in the child before exec: no broker or admin
// socket, no state-dir lock), no configuration (the plugin's path and its
// [domain.settings] come through the socket; broker passwords never), no
// systemd notification socket, and a clean signal mask. It exits when
// kanband's end of its socket closes, so it never outlives kanband, even
// after a SIGKILL of kanband.
#pragma once

#include "common/result.hpp"
#include "runner/channel.hpp"

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kanban::host::runner {

// What a runner is started with: one plugin generation of one domain.
struct RunnerSpec {
    std::string domain;
    std::string plugin_path;
    std::string settings_json;
    std::string log_level = "info";
    std::string exe = "/proc/self/exe";  // the kanband binary
};

// How a runner process ended.
struct ExitInfo {
    bool signaled = false;
    int code = 0;  // exit status, or signal number
    std::string describe() const;  // "signal 11 (SIGSEGV)", "exit status 0"
};

class RunnerProcess {
public:
    // Starts a runner and waits (up to `ready_within`) until its plugin is
    // loaded and created. The error carries the runner's own message
    // (cannot load, ABI version, create() failed) or says it died or hung.
    static Result<std::unique_ptr<RunnerProcess>> spawn(const RunnerSpec& spec, std::chrono::milliseconds ready_within);
    ~RunnerProcess();  // kills and reaps it if it still runs
    RunnerProcess(const RunnerProcess&) = delete;
    RunnerProcess& operator=(const RunnerProcess&) = delete;

    pid_t pid() const { return pid_; }
    const std::string& pluginName() const { return name_; }
    const std::string& pluginVersion() const { return version_; }
    Shared& shared() { return *shared_; }

    // Starts a batch: clears the shared state and queues its one frame.
    void begin(const BatchHeader& header, const std::vector<WireItem>& items);
    enum class Event { none, done, died };
    // Sends what is queued and waits up to `wait` for the batch's end or the
    // process's death.
    Event pump(std::chrono::milliseconds wait);
    // The follow-ups of item `index` of this batch (its result says how
    // many): read from the socket if they are not in yet. Fewer than the
    // result says means they were lost (a corrupt frame).
    std::vector<plugin::FollowUp> takeFollowUps(std::size_t index);
    // SIGKILL, then reaps it.
    ExitInfo kill();
    // After Event::died: reaps it.
    ExitInfo reap();
    // Asks it to end (its plugin's destroy() runs); kills it after `grace`.
    void retire(std::chrono::milliseconds grace);

private:
    RunnerProcess() = default;
    bool waitExit(std::chrono::milliseconds wait);  // pidfd readable within `wait`
    // Reads every whole frame there is (BatchDone sets batch_done_,
    // FollowUps are kept); false when the runner's end closed.
    bool readFrames();
    pid_t pid_ = -1;
    int sock_ = -1;
    int pidfd_ = -1;
    Shared* shared_ = nullptr;
    bool reaped_ = false;
    ExitInfo exit_;
    std::string out_;
    std::size_t out_done_ = 0;
    std::unique_ptr<FrameReader> reader_;
    bool batch_done_ = false;
    std::map<std::size_t, std::vector<plugin::FollowUp>> follow_ups_;  // of the current batch, by item index
    std::string name_, version_;
};

}  // namespace kanban::host::runner
