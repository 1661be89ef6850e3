// What every kanbanctl verb shares: exit codes, one-line errors, loading
// the configuration.
//
// Exit codes: 0 ok; 64 usage (bad flag, bad value, unknown domain);
// 66 input file missing (--file, --config); 69 broker or daemon
// unreachable; 1 anything else (including a refusal by the daemon).
// Errors are one line on stderr.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "config/config.hpp"

namespace kanban::ctl {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 64;
constexpr int kExitNoInput = 66;
constexpr int kExitUnavailable = 69;

// Prints "kanbanctl: <message>" on stderr; returns `code`.
int fail(int code, const std::string& message);
// Loads `path` into `out`; an exit code (and a message printed) on failure.
int loadConfig(const std::string& path, host::config::Config& out);
// Indented JSON; invalid UTF-8 replaced.
std::string dump(const nlohmann::json& j);

}  // namespace kanban::ctl
