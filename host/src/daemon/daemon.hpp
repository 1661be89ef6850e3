// kanband's lifetime: config → brokers → admin → domains (plugins and
// workers) → scheduler and coordinator → signals, and the reverse on
// shutdown. `kanband --check-config` is plugin/check_config.hpp.
#pragma once

#include <string>

namespace kanban::host::daemon {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; call first thing
// in main() so that every thread started later inherits the mask and the
// signals are taken synchronously by run().
void blockSignals();

// `kanband --config PATH`: runs until SIGTERM/SIGINT; returns the exit code.
int run(const std::string& path);

}  // namespace kanban::host::daemon
