// Where the paused domains are kept (kanbanctl domain pause): one place
// every host of the cluster reads, so a pause holds on every host and
// across restarts. broker::JetStreamPauseStore keeps it in NATS; unit
// tests fake it.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "common/result.hpp"

namespace kanban::host::pause {

// Paused domain -> when it was paused (Unix ms).
using Paused = std::map<std::string, std::int64_t>;

class PauseStore {
public:
    virtual ~PauseStore() = default;
    // Whether asking now can get an answer.
    virtual bool available() const = 0;
    virtual Result<Paused> paused() = 0;
    // Pauses or resumes `domain`, atomically against other hosts doing
    // the same; true if that changed the stored state.
    virtual Result<bool> set(const std::string& domain, bool paused, std::int64_t now_unix_ms) = 0;
};

}  // namespace kanban::host::pause
