// kanband's lifetime: config → plugins → broker → admin → workers → signals,
// and the reverse on shutdown.
#pragma once

#include <string>

namespace kanban::host::daemon {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread; call first thing
// in main() so that every thread started later inherits the mask and the
// signals are taken synchronously by run().
void blockSignals();

// `kanband --check-config PATH`: parses and validates the file, loads every
// plugin with its ABI check and creates (then destroys) each handler.
// Touches no broker. Prints problems to stderr; returns the exit code (0/1).
int checkConfig(const std::string& path);

// `kanband --config PATH`: runs until SIGTERM/SIGINT; returns the exit code.
int run(const std::string& path);

}  // namespace kanban::host::daemon
