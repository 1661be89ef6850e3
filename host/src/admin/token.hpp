// The admin API's bearer token (admin.token_file), read by kanband to
// check requests and by kanbanctl to send them.
#pragma once

#include <string>

#include "common/result.hpp"

namespace kanban::host::admin {

// A token file's content without surrounding whitespace; an error names
// the file when it cannot be read or is empty.
Result<std::string> readTokenFile(const std::string& path);

}  // namespace kanban::host::admin
