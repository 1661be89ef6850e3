// The operator's console (GET / on the admin listener): one self-contained
// page (HTML, CSS and JS; no external assets) that reads the JSON endpoints
// (/health, /schedules, /dlq/<domain>) and refreshes itself. The page is
// console.html, embedded at build time.
#pragma once

#include <string_view>

namespace kanban::host::console {
extern const std::string_view kPage;
}
