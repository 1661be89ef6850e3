// What is known of an item's handler calls that did not end it (docs/design.md
// §5, attempts): the shared record lives next to the idempotency record in
// the KANBAN_DONE bucket, written before the item goes back to the broker,
// so that an attempt is a handler call and nothing else. A delivery that
// never reached a handler (waiting in a batch, handed back by a breaker, a
// drain or a crash of the host while another item ran) leaves no trace in
// it and costs the item nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kanban::host::broker {

struct AttemptRecord {
    std::uint32_t calls = 0;     // handler calls so far, crashes included
    bool dead_letter = false;    // settled as a dead letter that could not be stored yet
    std::string label;           // the dead-letter reason label that applies (retries_exhausted, handler_crashed, ...)
    std::string reason;          // the last call's reason text
    bool operator==(const AttemptRecord&) const = default;
};

// `calls\tdead_letter\tlabel\treason`: small, and readable with `nats kv get`.
std::string encodeAttemptRecord(const AttemptRecord& r);
std::optional<AttemptRecord> decodeAttemptRecord(std::string_view text);

// The record's key in the bucket, beside the done record's key.
std::string attemptKey(std::string_view id);

}  // namespace kanban::host::broker
