// The host side of <kanban/plugin.h>: the per-item context and the
// kanban_host_api table handed to every plugin.
#pragma once

#include <kanban/plugin.h>

#include "common/headers.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kanban::host::plugin {

// A follow-up a handler asked for (kanban_host_api.publish), checked and
// copied: published by the worker if the attempt returns ok.
struct FollowUp {
    std::string id;  // "<parent id>/<key>" or "<parent id>/<n>"
    std::string domain;
    std::string payload;
    std::optional<kanban_priority> priority;  // absent: the parent's
    Headers headers;                          // the handler's own (checked)
    std::int64_t delay_ms = 0;
};

inline constexpr std::size_t kMaxFollowUps = 1000;  // per attempt
inline constexpr std::size_t kMaxChildIdBytes = 256;  // broker::kMaxWorkIdBytes

// What a follow-up is checked against.
struct FollowUpRules {
    std::function<bool(std::string_view domain)> known_domain;  // empty: any
};

}  // namespace kanban::host::plugin

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

    // 1.1 headers, read from the item on first use (most handlers never
    // look): `load_headers(headers_arg, out)` appends the item's own.
    void (*load_headers)(const void* arg, kanban::host::Headers& out) = nullptr;
    const void* headers_arg = nullptr;
    // This attempt's own trace context (a W3C traceparent; empty: not
    // traced): shown as the `traceparent` header, put on follow-ups. Its
    // trace id tags the item's log lines.
    std::string_view traceparent;
    mutable std::once_flag headers_once;
    mutable kanban::host::Headers header_store;
    mutable std::vector<kanban_header> header_view;

    // 1.1 follow-ups: null rules = publish refused (the host does not offer it here).
    const kanban::host::plugin::FollowUpRules* follow_up_rules = nullptr;
    std::mutex follow_ups_mu;
    std::vector<kanban::host::plugin::FollowUp> follow_ups;  // follow_ups_mu
};

namespace kanban::host::plugin {

// The table passed to create(); static, valid for the life of the process.
const kanban_host_api* hostApi();

// The trace id (32 hex digits) of a traceparent, or "" (for log lines).
std::string_view traceIdOf(std::string_view traceparent);

}  // namespace kanban::host::plugin
