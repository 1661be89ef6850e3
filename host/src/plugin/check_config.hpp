// `kanband --check-config PATH` and `kanbanctl config check PATH`: the
// configuration file and every domain's plugin (loaded and created, as at
// start), without touching a broker.
#pragma once

#include <string>

namespace kanban::host::plugin {

// Prints "PATH: OK (...)" to stdout and returns 0, or prints each problem
// (line:column for TOML errors, the domain and file for plugins) to stderr
// and returns 1.
int checkConfig(const std::string& path);

}  // namespace kanban::host::plugin
