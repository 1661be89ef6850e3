#include "scheduler/scheduler.hpp"

#include "common/clock.hpp"
#include "common/names.hpp"
#include "scheduler/cron.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kanban::host::scheduler {
namespace {

using Steady = std::chrono::steady_clock;

// A tick more than this late (a pause, a suspend, a clock jump) is not
// published: no catch-up burst.
constexpr std::int64_t kLateMs = 1000;

std::int64_t periodMs(const config::ScheduleConfig& job) { return job.every_ms ? *job.every_ms : 60'000; }

}  // namespace

std::optional<std::int64_t> nextTick(const config::ScheduleConfig& job, std::int64_t after_ms) {
    if (job.every_ms) {
        const std::int64_t every = std::max<std::int64_t>(1, *job.every_ms);
        return (after_ms / every + 1) * every;
    }
    if (!job.cron) return std::nullopt;
    auto expr = parseCron(*job.cron);
    if (!expr) return std::nullopt;
    auto fire = nextFire(*expr, after_ms / 1000);
    if (!fire) return std::nullopt;
    return *fire * 1000;
}

bool keptUnderBackpressure(const config::ScheduleConfig& job, std::int64_t tick_ms) {
    return (tick_ms / periodMs(job)) % kThrottle == 0;
}

std::string tickId(const std::string& job, std::int64_t tick_ms) { return "sched:" + job + ":" + std::to_string(tick_ms); }

std::string_view stateName(JobState s) {
    switch (s) {
        case JobState::canary: return "canary";
        case JobState::running: return "running";
        case JobState::paused: return "paused";
    }
    return "running";
}

Result<config::ScheduleConfig> jobFromJson(const nlohmann::json& j, const config::Config& cfg) {
    if (!j.is_object()) return Error{"a schedule is a JSON object"};
    static const char* kKeys[] = {"name", "domain", "priority", "every_ms", "cron", "deadline_ms", "payload"};
    for (const auto& [key, value] : j.items())
        if (std::find_if(std::begin(kKeys), std::end(kKeys), [&](const char* k) { return key == k; }) == std::end(kKeys))
            return Error{"unknown key \"" + key + "\""};
    config::ScheduleConfig job;
    auto str = [&](const char* key, std::string& out, bool required) -> Status {
        if (!j.contains(key)) return required ? Status(Error{std::string("\"") + key + "\" is required"}) : Status(Ok{});
        if (!j[key].is_string()) return Error{std::string("\"") + key + "\" must be a string"};
        out = j[key].get<std::string>();
        return Ok{};
    };
    auto positive = [&](const char* key) -> Result<std::optional<std::int64_t>> {
        if (!j.contains(key)) return std::optional<std::int64_t>{};
        if (!j[key].is_number_integer() || j[key].get<std::int64_t>() <= 0)
            return Error{std::string("\"") + key + "\" must be a positive integer (milliseconds)"};
        return std::optional<std::int64_t>(j[key].get<std::int64_t>());
    };
    if (Status s = str("name", job.name, true); !s) return s.error();
    if (!isValidIdentifier(job.name)) return Error{"\"name\" must match [A-Za-z0-9_-]+"};
    if (Status s = str("domain", job.domain, true); !s) return s.error();
    if (cfg.findDomain(job.domain) == nullptr) return Error{"unknown domain \"" + job.domain + "\""};
    std::string prio = "normal";
    if (Status s = str("priority", prio, false); !s) return s.error();
    auto p = parsePriority(prio);
    if (!p) return Error{"\"priority\" must be one of high, normal, low"};
    job.priority = *p;
    auto every = positive("every_ms");
    if (!every) return every.error();
    job.every_ms = *every;
    std::string cron;
    if (Status s = str("cron", cron, false); !s) return s.error();
    if (j.contains("cron")) {
        if (auto parsed = parseCron(cron); !parsed) return Error{"\"cron\": " + parsed.message()};
        job.cron = cron;
    }
    if (job.every_ms && job.cron) return Error{"set either \"every_ms\" or \"cron\", not both"};
    if (!job.every_ms && !job.cron) return Error{"one of \"every_ms\" or \"cron\" is required"};
    auto deadline = positive("deadline_ms");
    if (!deadline) return deadline.error();
    job.deadline_ms = *deadline;
    if (Status s = str("payload", job.payload, false); !s) return s.error();
    return job;
}

nlohmann::json jobToJson(const config::ScheduleConfig& job) {
    nlohmann::json j{{"name", job.name}, {"domain", job.domain}, {"priority", std::string(priorityName(job.priority))},
                     {"payload", job.payload}};
    if (job.every_ms) j["every_ms"] = *job.every_ms;
    if (job.cron) j["cron"] = *job.cron;
    if (job.deadline_ms) j["deadline_ms"] = *job.deadline_ms;
    return j;
}

Scheduler::Scheduler(const config::Config& cfg, Hooks hooks)
    : settings_(cfg.scheduler), config_jobs_(cfg.schedules), hooks_(std::move(hooks)) {}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
    for (const auto& job : config_jobs_) add(job, "config");
    thread_ = std::thread([this] { run(); });
}

void Scheduler::stop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Scheduler::schedule(Job& job, std::int64_t after_ms) {
    job.status.next_tick_ms = nextTick(job.status.spec, after_ms);
    if (!job.status.next_tick_ms) return;
    job.due = Steady::now() + std::chrono::milliseconds(std::max<std::int64_t>(0, *job.status.next_tick_ms - nowUnixMs()));
}

void Scheduler::add(const config::ScheduleConfig& spec, const std::string& source) {
    {
        std::lock_guard lock(mu_);
        Job job;
        job.status.spec = spec;
        job.status.source = source;
        schedule(job, nowUnixMs());
        jobs_[spec.name] = std::move(job);
    }
    if (hooks_.on_added) hooks_.on_added(spec.name);
    spdlog::info("schedule added job={} domain={} {} source={}: a canary goes first", spec.name, spec.domain,
                 spec.every_ms ? "every_ms=" + std::to_string(*spec.every_ms) : "cron=\"" + *spec.cron + "\"", source);
    cv_.notify_all();
}

bool Scheduler::remove(const std::string& name) {
    std::lock_guard lock(mu_);
    if (jobs_.erase(name) == 0) return false;
    spdlog::info("schedule removed job={}", name);
    return true;
}

std::optional<JobStatus> Scheduler::find(const std::string& name) const {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(name);
    if (it == jobs_.end()) return std::nullopt;
    return it->second.status;
}

std::vector<JobStatus> Scheduler::list() const {
    std::lock_guard lock(mu_);
    std::vector<JobStatus> out;
    for (const auto& [name, job] : jobs_) out.push_back(job.status);
    return out;
}

void Scheduler::syncRuntime(const std::map<std::string, config::ScheduleConfig>& stored) {
    std::vector<config::ScheduleConfig> to_add;
    std::vector<std::string> to_remove;
    {
        std::lock_guard lock(mu_);
        for (const auto& [name, spec] : stored) {
            auto it = jobs_.find(name);
            if (it == jobs_.end() || (it->second.status.source == "api" && !(it->second.status.spec == spec)))
                to_add.push_back(spec);
        }
        for (const auto& [name, job] : jobs_)
            if (job.status.source == "api" && stored.count(name) == 0) to_remove.push_back(name);
    }
    for (const auto& spec : to_add) add(spec, "api");
    for (const auto& name : to_remove) remove(name);
}

void Scheduler::reconfigure(const config::Config& next) {
    std::vector<config::ScheduleConfig> to_add;
    std::vector<std::string> to_remove;
    {
        std::lock_guard lock(mu_);
        settings_ = next.scheduler;
        for (const auto& spec : next.schedules) {
            auto it = jobs_.find(spec.name);
            if (it == jobs_.end() || it->second.status.source != "config" || !(it->second.status.spec == spec))
                to_add.push_back(spec);
        }
        for (const auto& old : config_jobs_)
            if (std::none_of(next.schedules.begin(), next.schedules.end(), [&](const auto& j) { return j.name == old.name; }))
                to_remove.push_back(old.name);
        config_jobs_ = next.schedules;
    }
    for (const auto& name : to_remove) remove(name);
    for (const auto& spec : to_add) add(spec, "config");
}

void Scheduler::recanary(const std::string& domain) {
    std::lock_guard lock(mu_);
    for (auto& [name, job] : jobs_) {
        if (job.status.spec.domain != domain || job.status.state == JobState::paused) continue;
        job.status.state = JobState::canary;
        job.canary_id.reset();
        spdlog::info("schedule job={}: the plugin of domain={} changed, a canary goes first", name, domain);
    }
}

void Scheduler::settled(const std::string& id, bool ok) {
    std::lock_guard lock(mu_);
    for (auto& [name, job] : jobs_) {
        if (job.status.state != JobState::canary || job.canary_id != id) continue;
        if (ok) {
            job.status.state = JobState::running;
            spdlog::info("schedule canary handled ok job={} id={}: full rate", name, id);
            if (hooks_.on_canary) hooks_.on_canary(name, "ok");
        } else {
            pause(job, "canary " + id + " was dead-lettered", "failed");
        }
    }
}

void Scheduler::skip(Job& job, const std::string& reason, std::uint64_t n) {
    job.status.skipped[reason] += n;
    if (hooks_.on_skipped) hooks_.on_skipped(job.status.spec.name, reason, n);
}

void Scheduler::pause(Job& job, const std::string& why, const std::string& outcome) {
    job.status.state = JobState::paused;
    job.status.reason = why;
    spdlog::warn("schedule paused job={}: {}; add it again (POST /schedules, or restart for a config job) to resume",
                 job.status.spec.name, why);
    if (hooks_.on_canary) hooks_.on_canary(job.status.spec.name, outcome);
}

void Scheduler::run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
        // Canaries in flight: done (here or on another host), or out of time?
        std::vector<std::pair<std::string, std::string>> pending;  // job, canary id
        for (auto& [name, job] : jobs_)
            if (job.status.state == JobState::canary && job.canary_id) pending.emplace_back(name, *job.canary_id);
        if (!pending.empty()) {
            lock.unlock();
            std::vector<std::pair<std::string, bool>> done;
            for (const auto& [name, id] : pending) done.emplace_back(name, hooks_.done && hooks_.done(id));
            lock.lock();
            for (std::size_t i = 0; i < done.size(); ++i) {
                auto it = jobs_.find(done[i].first);
                if (it == jobs_.end() || it->second.canary_id != pending[i].second) continue;
                Job& job = it->second;
                if (job.status.state != JobState::canary) continue;
                if (done[i].second) {
                    job.status.state = JobState::running;
                    spdlog::info("schedule canary handled ok job={} id={}: full rate", done[i].first, pending[i].second);
                    if (hooks_.on_canary) hooks_.on_canary(done[i].first, "ok");
                } else if (Steady::now() >= job.canary_deadline) {
                    pause(job,
                          "canary " + pending[i].second + " not handled within " +
                              std::to_string(settings_.canary_timeout_ms) + " ms",
                          "timeout");
                }
            }
        }

        // The jobs whose tick has come.
        const auto now = Steady::now();
        auto wake = now + std::chrono::milliseconds(pending.empty() ? 1000 : 100);
        std::vector<std::string> due;
        for (auto& [name, job] : jobs_) {
            if (!job.status.next_tick_ms) continue;
            if (job.due <= now)
                due.push_back(name);
            else
                wake = std::min(wake, job.due);
        }
        if (due.empty()) {
            cv_.wait_until(lock, wake);
            continue;
        }
        for (const auto& name : due) {
            auto it = jobs_.find(name);
            if (it == jobs_.end()) continue;
            Job& job = it->second;
            const std::int64_t tick = *job.status.next_tick_ms;
            const std::int64_t wall = nowUnixMs();
            if (wall + 5 < tick) {  // woke early: the wall clock went back
                schedule(job, wall - 1);
                continue;
            }
            if (wall - tick > kLateMs) {  // a pause or a jump forwards: no catch-up
                const auto missed = static_cast<std::uint64_t>((wall - tick) / periodMs(job.status.spec) + 1);
                skip(job, "missed", missed);
                spdlog::warn("schedule job={}: {} tick(s) missed (the process was paused or the clock jumped); "
                             "going on with the next one",
                             name, missed);
                schedule(job, wall);
                continue;
            }
            schedule(job, tick);
            job.status.last_tick_ms = tick;
            const config::ScheduleConfig spec = job.status.spec;
            // Decide under the lock; publish without it.
            bool canary = false;
            if (job.status.state == JobState::paused) {
                skip(job, "paused");
                continue;
            }
            if (hooks_.draining && hooks_.draining()) {
                skip(job, "draining");
                continue;
            }
            if (job.status.state == JobState::canary) {
                if (job.canary_id) {
                    skip(job, "canary");
                    continue;
                }
                canary = true;
            } else {
                const auto depth = hooks_.depth ? hooks_.depth(spec.domain) : std::nullopt;
                const bool over = depth && static_cast<std::int64_t>(*depth) > settings_.backpressure_depth;
                if (over != job.status.throttled) {
                    job.status.throttled = over;
                    if (over)
                        spdlog::warn("schedule job={}: domain={} depth {} over backpressure_depth {}: publishing one tick in {}",
                                     name, spec.domain, *depth, settings_.backpressure_depth, kThrottle);
                    else
                        spdlog::info("schedule job={}: domain={} depth back under backpressure_depth: full rate", name,
                                     spec.domain);
                }
                if (over && !keptUnderBackpressure(spec, tick)) {
                    skip(job, "backpressure");
                    continue;
                }
            }
            broker::PublishRequest req;
            req.domain = spec.domain;
            req.priority = spec.priority;
            req.payload = spec.payload;
            req.id = tickId(name, tick);
            if (spec.deadline_ms) req.deadline_unix_ms = tick + *spec.deadline_ms;
            lock.unlock();
            auto ack = hooks_.publish(req);
            lock.lock();
            it = jobs_.find(name);
            if (it == jobs_.end() || !(it->second.status.spec == spec)) continue;  // removed or replaced meanwhile
            if (!ack) {
                skip(it->second, "publish_error");
                spdlog::warn("schedule job={}: tick {} not published: {}", name, tick, ack.message());
                continue;
            }
            if (!ack->duplicate) {
                ++it->second.status.published;
                if (hooks_.on_published) hooks_.on_published(name);
            }
            if (canary) {
                it->second.canary_id = req.id;
                it->second.canary_deadline = Steady::now() + std::chrono::milliseconds(settings_.canary_timeout_ms);
                spdlog::info("schedule canary published job={} id={}", name, req.id);
            }
        }
    }
}

}  // namespace kanban::host::scheduler
