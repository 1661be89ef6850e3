// Periodic and cron jobs (docs/design.md §4 [[schedule]], §5 scheduler).
//
// Ticks. A job's ticks are instants of the wall clock that every host
// computes alike: for `every_ms`, the multiples of every_ms since the epoch;
// for `cron`, the matching minutes (UTC). Each tick is published once, with
// the id `sched:<job>:<tick-epoch-ms>`, so that JetStream's duplicate window
// collapses the copies of several hosts (on RabbitMQ, idempotency absorbs
// them). The thread sleeps on the monotonic clock until the next tick.
// No catch-up: after a pause, a suspend or a clock jump forwards, the ticks
// that passed are counted as skipped ("missed") and the job goes on with
// the next one; a jump backwards just waits for the next tick.
//
// Canary. A job that starts in this process (from the config, from the API,
// or again after it was paused) first publishes one tick and publishes no
// more until that item was handled ok. If it is dead-lettered, or not done
// within `scheduler.canary_timeout_ms`, the job is paused: visible in
// /schedules and the log, until it is added again.
//
// Backpressure. While the target domain's depth (the coordinator's last
// sample) exceeds `scheduler.backpressure_depth`, only every 4th tick is
// published (chosen from the tick's time, so all hosts pick the same ones);
// the others are counted as skipped ("backpressure"). Full rate returns as
// soon as the depth is back under the threshold. While the host drains, no
// tick is published ("draining").
#pragma once

#include "broker/work_queue.hpp"
#include "config/config.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace kanban::host::scheduler {

// Under backpressure one tick in this many is published.
inline constexpr std::int64_t kThrottle = 4;

// The first tick strictly after `after_ms` (epoch ms); nullopt if none
// (a cron expression that never matches).
std::optional<std::int64_t> nextTick(const config::ScheduleConfig& job, std::int64_t after_ms);
// Whether the tick at `tick_ms` is one of those published under backpressure.
bool keptUnderBackpressure(const config::ScheduleConfig& job, std::int64_t tick_ms);
// `sched:<job>:<tick-epoch-ms>`
std::string tickId(const std::string& job, std::int64_t tick_ms);
// A job from the admin API's JSON (the keys of [[schedule]]), checked like
// the config: a clear message per problem.
Result<config::ScheduleConfig> jobFromJson(const nlohmann::json& j, const config::Config& cfg);
nlohmann::json jobToJson(const config::ScheduleConfig& job);

enum class JobState { canary, running, paused };
std::string_view stateName(JobState s);

struct JobStatus {
    config::ScheduleConfig spec;
    std::string source;  // "config" or "api"
    JobState state = JobState::canary;
    std::string reason;  // why paused
    std::uint64_t published = 0;
    std::map<std::string, std::uint64_t> skipped;  // by reason
    std::optional<std::int64_t> next_tick_ms, last_tick_ms;
    bool throttled = false;
};

class Scheduler {
public:
    struct Hooks {
        std::function<Result<broker::PublishAck>(const broker::PublishRequest&)> publish;
        // The domain's depth as last sampled (nullopt: unknown).
        std::function<std::optional<std::uint64_t>(const std::string& domain)> depth;
        // Whether a work id was completed (the idempotency record).
        std::function<bool(const std::string& id)> done;
        std::function<bool()> draining;
        std::function<void(const std::string& job)> on_published;
        std::function<void(const std::string& job, const std::string& reason, std::uint64_t n)> on_skipped;
        std::function<void(const std::string& job, const std::string& outcome)> on_canary;
        std::function<void(const std::string& job)> on_added;  // a job from the config or the API
    };

    Scheduler(const config::Config& cfg, Hooks hooks);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    void start();  // the config's jobs, then the thread
    void stop();

    // Adds a job, or replaces the one of that name (starting with a canary).
    void add(const config::ScheduleConfig& job, const std::string& source);
    bool remove(const std::string& name);
    std::optional<JobStatus> find(const std::string& name) const;
    std::vector<JobStatus> list() const;
    // The runtime jobs as stored now (name -> spec): adds, replaces and
    // removes this host's API jobs to match.
    void syncRuntime(const std::map<std::string, config::ScheduleConfig>& stored);
    // A reloaded config: new scheduler settings; config jobs added, changed
    // (a new canary) or removed to match. Runtime jobs are untouched.
    void reconfigure(const config::Config& next);
    // The domain's plugin changed: its jobs send a canary again.
    void recanary(const std::string& domain);
    // A scheduled item settled on this host (fast path for canaries).
    void settled(const std::string& id, bool ok);

private:
    struct Job {
        JobStatus status;
        std::chrono::steady_clock::time_point due;
        std::optional<std::string> canary_id;
        std::chrono::steady_clock::time_point canary_deadline;
    };

    void run();
    void schedule(Job& job, std::int64_t after_ms);
    void fire(Job& job, std::int64_t tick_ms);
    void checkCanary(Job& job);
    void skip(Job& job, const std::string& reason, std::uint64_t n = 1);
    void pause(Job& job, const std::string& why, const std::string& outcome);

    config::SchedulerConfig settings_;              // mu_
    std::vector<config::ScheduleConfig> config_jobs_;  // mu_ (after start)
    Hooks hooks_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, Job> jobs_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace kanban::host::scheduler
