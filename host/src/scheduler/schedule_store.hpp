// Where runtime schedules (added with POST /schedules or `kanbanctl
// schedule add`) are kept so that every host runs them and they survive a
// restart. The scheduler owns this interface; the JetStream KV bucket
// `<stream>_SCHEDULES` implements it (broker/jetstream_schedule_store.hpp).
#pragma once

#include <map>
#include <string>

#include "common/result.hpp"

namespace kanban::host::scheduler {

class ScheduleStore {
public:
    virtual ~ScheduleStore() = default;
    // Whether the store can be asked now (false: its broker is down; a
    // request would only wait for a timeout).
    virtual bool available() const = 0;
    // Stores (or replaces) a job as its JSON text.
    virtual Status put(const std::string& name, const std::string& json) = 0;
    // false if there was no such job.
    virtual Result<bool> remove(const std::string& name) = 0;
    // Every stored job: name -> JSON text.
    virtual Result<std::map<std::string, std::string>> all() = 0;
};

}  // namespace kanban::host::scheduler
