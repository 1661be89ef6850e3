// What the coordinator sees of one domain's worker pool: enough to size it
// and to count stalled items. worker::DomainWorkers implements it; the
// coordinator's unit tests fake it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kanban::host::worker {

// An item in a handler for longer than the stall threshold.
struct StalledItem {
    std::string id;
    std::uint32_t attempt = 0;
    double in_handler_seconds = 0;
};

class PoolControl {
public:
    virtual ~PoolControl() = default;
    // The pool size asked for last.
    virtual std::size_t target() const = 0;
    // The most workers the pool can run now: workers.max, bounded by the
    // slots allocated at start (a reload cannot raise it past those).
    virtual std::size_t capacity() const = 0;
    // Asks for `count` workers (clamped to capacity()).
    virtual void setTarget(std::size_t count) = 0;
    // Workers whose current item has been in the handler longer than `threshold`.
    virtual std::size_t stalled(std::chrono::milliseconds threshold) const = 0;
    // Which items those are (longest first).
    virtual std::vector<StalledItem> stalledItems(std::chrono::milliseconds /*threshold*/) const { return {}; }
    // Items settled as dead letters that the DLQ refused (full, unreachable).
    virtual std::size_t deadLettersPending() const { return 0; }
};

}  // namespace kanban::host::worker
