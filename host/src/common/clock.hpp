// Wall-clock helpers: deadlines on the wire are Unix epoch milliseconds;
// timeouts inside the host use std::chrono::steady_clock.
#pragma once

#include <chrono>
#include <cstdint>

namespace kanban::host {

inline std::int64_t nowUnixMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

inline std::int64_t nowUnixNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace kanban::host
