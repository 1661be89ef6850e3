// The host side of <kanban/plugin.h>: the per-item context and the
// kanban_host_api table handed to every plugin.
#pragma once

#include <kanban/plugin.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

// Defined here, opaque to plugins. One per item being handled; lives on the
// worker's stack for the duration of handle().
struct kanban_context {
    std::string_view domain;
    std::string_view id;
    std::uint32_t attempt = 1;
    std::chrono::steady_clock::time_point deadline;  // monotonic: immune to clock jumps
    // Explicit cancellation, on top of the deadline: set by the worker pool
    // on shutdown (DomainWorkers::requestStop with cancel_running).
    std::atomic<bool> cancelled{false};
    // In a runner process (isolation = "process"): the host's request to
    // stop, in memory shared with kanband; non-zero = cancelled.
    const std::atomic<std::uint32_t>* external_cancel = nullptr;
    void (*on_progress)(void* arg) = nullptr;        // tells the broker the item is alive
    void* progress_arg = nullptr;
};

namespace kanban::host::plugin {

// The table passed to create(); static, valid for the life of the process.
const kanban_host_api* hostApi();

}  // namespace kanban::host::plugin
