// A reload (SIGHUP) as a plan: what differs between the running
// configuration and the file as it is now, and so what to apply. Computing
// the plan has no side effect; the daemon applies it (daemon.cpp) after
// the changed plugins were built in the shadow (plugin::Registry), so a
// refused reload changes nothing.
//
// Restart-only sections ([nats], [rabbitmq], [admin]: the connections and
// the listener belong to the process, not to a generation) are not
// applied: the plan's `next` keeps the running values for them, so the
// configuration recorded as running is the one that runs, and every later
// reload that still differs warns again.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"

namespace kanban::host::reload {

struct Plan {
    config::Config next;                    // what runs once applied
    std::vector<std::string> added;         // domains to start
    std::vector<std::string> removed;       // domains to drain and stop
    std::vector<std::string> new_settings;  // running domains whose worker settings change
    std::vector<std::string> restart_only;  // sections that differ but need a restart: "[nats]", ...
    bool log_level_changed = false;
};

// `running`: the configuration in force (as a previous plan left it);
// `loaded`: the file as just parsed and validated.
Plan makePlan(const config::Config& running, const config::Config& loaded);

}  // namespace kanban::host::reload
