#include "scheduler/stored_jobs.hpp"

#include <spdlog/spdlog.h>

namespace kanban::host::scheduler {

void StoredJobs::sync() {
    if (!store_.available()) return;
    auto stored = store_.all();
    if (!stored) {
        spdlog::debug("schedules not read: {}", stored.message());
        return;
    }
    const auto cfg = cfg_();
    std::map<std::string, config::ScheduleConfig> jobs;
    for (const auto& [name, text] : *stored) {
        auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
        auto job = jobFromJson(j, *cfg);
        if (!job) {
            if (logged_.insert(name + text).second)
                spdlog::warn("stored schedule {} not run here: {}", name, job.message());
            continue;
        }
        jobs[name] = std::move(*job);
    }
    scheduler_.syncRuntime(jobs);
}

}  // namespace kanban::host::scheduler
