// Runtime jobs: added through the admin API, kept in a ScheduleStore for
// every host, and run here by matching the scheduler to what is stored
// (sync, once per coordinator tick).
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>

#include "scheduler/schedule_store.hpp"
#include "scheduler/scheduler.hpp"

namespace kanban::host::scheduler {

class StoredJobs {
public:
    // `cfg` gives the running configuration (to check a stored job against).
    StoredJobs(ScheduleStore& store, Scheduler& scheduler, std::function<std::shared_ptr<const config::Config>()> cfg)
        : store_(store), scheduler_(scheduler), cfg_(std::move(cfg)) {}

    // Reads the store and adds, replaces or removes this host's runtime
    // jobs to match. A stored job that does not fit this host's config (an
    // unknown domain) is logged once and not run.
    void sync();

private:
    ScheduleStore& store_;
    Scheduler& scheduler_;
    std::function<std::shared_ptr<const config::Config>()> cfg_;
    std::set<std::string> logged_;  // bad jobs already logged (name + text)
};

}  // namespace kanban::host::scheduler
