// Where a work item is (kanbanctl status ID, GET /items/status): in a
// handler here, done, dead-lettered, waiting or delivered in a work queue,
// or unknown. Each answer comes from the record that owns it: the worker
// slots, the idempotency record, the dead-letter queues, the work streams.
// Nothing indexes the work streams by id, so "waiting" costs a read of the
// items stored before it, bounded by `max_scan`.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/inspection.hpp"
#include "broker/work_queue.hpp"
#include "worker/domain_table.hpp"

namespace kanban::host::status {

enum class State { waiting, in_flight, done, dead_lettered, unknown };
std::string_view stateName(State s);

struct ItemStatus {
    State state = State::unknown;
    std::string domain;   // when known
    std::string backend;  // "nats", "rabbitmq", when known
    // waiting, in_flight (from the work stream):
    std::optional<Priority> priority;
    std::uint64_t sequence = 0;
    std::optional<std::int64_t> published_unix_ms;
    // in_flight in a handler of this host:
    bool in_handler_here = false;
    double in_handler_seconds = 0;
    // Handler calls so far (the running one included), and the last ended one's reason.
    std::uint32_t attempts = 0;
    std::string reason;            // dead_lettered: why; otherwise the last call's reason
    std::string dead_lettered_at;  // RFC 3339
    // What was searched.
    std::uint64_t waiting_scanned = 0;
    bool waiting_complete = true;
    std::map<std::string, std::string> unavailable;  // what could not be asked, and why
};

class ItemLocator {
public:
    using OpenDoneStore = std::function<Result<std::unique_ptr<broker::DoneStore>>()>;
    ItemLocator(broker::Inspector& brokers, const worker::DomainTable& domains, OpenDoneStore open_done_store)
        : brokers_(brokers), domains_(domains), open_done_store_(std::move(open_done_store)) {}

    // Looks in `domains` (the configured ones when empty); reads at most
    // `max_scan` waiting items and as many dead letters.
    ItemStatus locate(const std::string& id, const std::vector<std::string>& domains, std::size_t max_scan);

private:
    bool inHandlerHere(const std::string& id, const std::vector<std::string>& domains, ItemStatus& out) const;
    bool done(broker::DoneStore* store, const std::string& id, ItemStatus& out) const;
    bool deadLettered(const std::string& id, const std::vector<std::string>& domains, std::size_t max_scan,
                      ItemStatus& out);

    broker::Inspector& brokers_;
    const worker::DomainTable& domains_;
    OpenDoneStore open_done_store_;
};

}  // namespace kanban::host::status
