// Times as people type them (kanbanctl publish --delay / --at).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kanban::host {

// "1500ms", "30s", "5m", "2h", "1d" (a whole number and one unit); nullopt
// when malformed, negative or past ten years.
std::optional<std::int64_t> parseDurationMs(std::string_view text);

// RFC 3339 with a zone: "2026-12-24T18:00:00Z", "2026-12-24T19:00:00.250+01:00";
// unix milliseconds, or nullopt when malformed (a time without its zone is
// refused: it would mean a different instant on each host).
std::optional<std::int64_t> parseRfc3339Ms(std::string_view text);

// "2026-12-24T18:00:00.000Z" (UTC, milliseconds).
std::string formatRfc3339Ms(std::int64_t unix_ms);

}  // namespace kanban::host
