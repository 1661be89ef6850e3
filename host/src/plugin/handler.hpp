// One plugin generation of a domain, as its workers run it: a handler
// instance inside kanband (isolation = "thread"), or the recipe of the
// runner processes that load it (isolation = "process"). Immutable; a
// reload makes a new one, and items in hand finish on the one they began.
#pragma once

#include "config/config.hpp"
#include "plugin/plugin.hpp"
#include "runner/runner_process.hpp"

#include <memory>
#include <optional>
#include <string>

namespace kanban::host::plugin {

struct Handler {
    std::shared_ptr<const Instance> instance;  // isolation = "thread"
    std::optional<runner::RunnerSpec> runner;  // isolation = "process"
    std::string name, version;                 // the plugin's descriptor

    bool isolated() const { return runner.has_value(); }
};

// The in-process handler of `instance`.
std::shared_ptr<const Handler> inProcess(std::shared_ptr<const Instance> instance);

// Loads a domain's plugin as the daemon runs it. In process isolation the
// plugin is never loaded into kanband: a runner is started to load and
// create it (its error, if any, is the result), then ended.
Result<std::shared_ptr<const Handler>> loadDomainHandler(const config::DomainConfig& d, const std::string& log_level);

}  // namespace kanban::host::plugin
