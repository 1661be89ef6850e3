// The queue interface the worker pool and the CLI talk to. JetStream and
// RabbitMQ implement it; broker::Failover puts the two behind one.
//
// Data flows one way: a Consumer hands out Deliveries; the worker finishes
// each one with exactly one of ack(), retryAfter(), release() or
// deadLetter(). A Delivery destroyed without any of them is redelivered by
// the broker after its ack wait (nothing is lost, only delayed).
#pragma once

#include "broker/attempt_record.hpp"
#include "common/headers.hpp"
#include "common/priority.hpp"
#include "common/result.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kanban::host::broker {

// Work ids longer than this are refused by publish and dead-lettered with
// reason `invalid_id` when consumed (an id is a dedup and idempotency key,
// not a payload).
inline constexpr std::size_t kMaxWorkIdBytes = 256;

// The broker's ack wait for a domain: longer than the handler timeout by a
// margin, so a handler that keeps to its timeout is never redelivered
// while it runs. A worker refreshes the items it holds (InProgress) at
// least every margin/2, so items waiting in its batch do not expire either.
inline std::chrono::milliseconds ackWaitFor(std::int64_t timeout_ms) {
    return std::chrono::milliseconds(timeout_ms + std::clamp<std::int64_t>(timeout_ms / 2, 1000, 10000));
}

// Attempts are handler calls, counted by the host (AttemptRecord). The
// broker's own delivery limit (JetStream's MaxDeliver) is only a safety net
// this far above max_attempts: deliveries that reach no handler (waiting in
// a batch, a breaker's or a drain's hand-back, a dead letter waiting for
// room) are not attempts, but a bug that settled an item never must not
// loop on it forever. The worker dead-letters an item on the last delivery
// the broker will make (max_deliveries_exceeded), so none is stranded.
inline constexpr std::int64_t kDeliveriesBeyondAttempts = 10000;
inline std::int64_t deliveryLimit(std::int64_t max_attempts) { return max_attempts + kDeliveriesBeyondAttempts; }

struct PublishRequest {
    std::string domain;
    Priority priority = Priority::normal;
    std::string payload;                          // opaque bytes
    std::string id;                               // work id (dedup key); required
    std::optional<std::int64_t> deadline_unix_ms; // absent: now + domain timeout at first pull
    // Kanban-Not-Before: no handler sees it before then (a delayed item).
    std::optional<std::int64_t> not_before_unix_ms;
    // The publisher's own headers (common/headers.hpp), shown to the handler.
    Headers headers;
};

struct PublishAck {
    std::uint64_t sequence = 0;
    bool duplicate = false;  // the broker already had this id (nothing stored)
};

class Delivery {
public:
    virtual ~Delivery() = default;

    std::string id;
    std::string domain;
    Priority priority = Priority::normal;
    std::string_view payload;  // valid while the Delivery lives
    // The handler call this delivery would be: 1 + the calls known from the
    // message itself (RabbitMQ carries them in a header; JetStream knows
    // none). The worker adds what the attempt records say before it runs.
    std::uint32_t attempt = 1;
    std::uint32_t deliveries = 1;  // the broker's delivery count (the safety net)
    // The broker delivered it before: it may have attempt records.
    bool maybe_tried = false;
    std::optional<std::int64_t> deadline_unix_ms;
    std::optional<std::int64_t> published_unix_ns;  // when the broker stored it
    std::optional<std::int64_t> not_before_unix_ms;  // Kanban-Not-Before

    // Done: remove the item. Asynchronous; a lost ack means a redelivery.
    virtual void ack() = 0;
    // Redeliver no earlier than `delay` from now.
    virtual void retryAfter(std::chrono::milliseconds delay) = 0;
    // The same with a delay the handler chose (Result::retry(reason, delay)),
    // which need not follow the domain's backoff.
    virtual void retryAfterChosen(std::chrono::milliseconds delay) { retryAfter(delay); }
    // Hand back an item that was not started (shutdown): redelivered at once.
    virtual void release() = 0;
    // Another worker of this host is running this very item (the broker
    // redelivered it meanwhile): leave it to that run, without spending an
    // attempt where the broker allows. JetStream: nothing is sent, the
    // running worker's ack or nak settles the message. RabbitMQ: a copy with
    // the same attempt count comes back after `delay`.
    virtual void defer(std::chrono::milliseconds delay) = 0;
    // Its Kanban-Not-Before is still ahead: out of the way of the domain's
    // other items until then, without a handler call or an attempt
    // (JetStream: into the delayed stream; RabbitMQ: through a delay queue).
    // The original is removed only once the copy is stored.
    virtual Status postpone(std::int64_t not_before_unix_ms) = 0;
    // Still being worked on: extends the broker's ack wait.
    virtual void progress() = 0;
    // Appends the item's own headers (its publisher's; never the host's
    // bookkeeping ones) to `out`. Read when asked, not at fetch: most
    // handlers never look.
    virtual void headers(Headers& out) const = 0;
    // The first value of one header (exact name; "" when absent).
    virtual std::string header(const char* name) const = 0;
    // The trace id of the attempt running it (for its log lines); empty
    // when not traced.
    std::string trace_id;
    // Publishes the item to the dead-letter queue and, once that publish is
    // acknowledged, removes the original. On error the original stays
    // (it will be redelivered); nothing is lost. `reason` is the text (the
    // plugin's own, or the host's); `code` its label (kDeadLetterReasons).
    virtual Status deadLetter(std::string_view reason, std::string_view code) = 0;
};

// An item in a dead-letter queue, as listed by the admin API.
struct DeadLetter {
    std::uint64_t sequence = 0;  // JetStream: in the dead-letter stream; RabbitMQ: 0
    std::string id, reason, original_subject;
    std::string reason_code;  // the label of kanban_items_dead_lettered_total; empty for older dead letters
    std::uint32_t attempts = 0;
    std::string dead_lettered_at;  // RFC 3339
    std::string payload;
    std::string backend;  // "nats" or "rabbitmq"
    Headers headers;      // the item's own, given back to it by a replay
};

using DeliveryBatch = std::vector<std::unique_ptr<Delivery>>;

// One worker's view of a domain's queue. Not thread-safe: one per worker.
class Consumer {
public:
    virtual ~Consumer() = default;
    // Pulls at most `max` items, high priority first. Blocks up to about
    // `idle_wait` when every level is empty; returns an empty batch then.
    // An error means this consumer is unusable (connection lost, consumer
    // deleted on the server): drop it and open a new one after a backoff.
    virtual Result<DeliveryBatch> fetch(int max, std::chrono::milliseconds idle_wait) = 0;
    // From any thread: a fetch() of this consumer that is waiting for work
    // returns (an empty batch) at once, and so does the next one that would
    // wait. For a stop, a smaller pool or a reload, so that idle waits can
    // be long (an idle worker costs nothing while it waits).
    virtual void interrupt() {}
};

struct ConsumerSpec {
    std::string domain;
    std::int64_t timeout_ms = 30000;    // domain handler timeout; ack wait is longer
    std::int64_t max_attempts = 5;      // host counts; the broker's limit is a safety net above it
    std::int64_t max_ack_pending = 200; // in flight across all workers and hosts
    std::int64_t starvation_ms = 30000; // see WorkersConfig::starvation_ms
    std::int64_t pull_batch = 10;       // RabbitMQ prefetch per worker
};

// Idempotency: the record of completed work ids (docs/design.md §5), shared by all
// hosts. One per worker, not thread-safe. Built for batches: one round trip
// looks up a whole batch; records are written asynchronously and awaited
// together, before the batch is acked.
class DoneStore {
public:
    virtual ~DoneStore() = default;
    // For each id: true if it was recorded as done. An error means the
    // store cannot answer now (the caller must not treat the ids as new).
    virtual Result<std::vector<bool>> lookup(const std::vector<std::string_view>& ids) = 0;
    // Starts writing the record for `id`; returns at once.
    virtual void record(std::string_view id) = 0;
    // Waits for every record() since the last flush; returns how many of
    // them could not be confirmed stored.
    virtual std::size_t flush() = 0;
    // The attempt records of `ids` (nullopt: none), in one round trip. An
    // error means the store cannot answer now.
    virtual Result<std::vector<std::optional<AttemptRecord>>> attempts(const std::vector<std::string_view>& ids) = 0;
    // Writes an item's attempt record and waits until the store has it.
    virtual Status recordAttempt(std::string_view id, const AttemptRecord& record) = 0;
    // Drops an item's attempt record (it was acked or dead-lettered):
    // asynchronous and best effort; a leftover expires with the bucket's
    // TTL, and only items delivered again are ever looked up.
    virtual void forgetAttempts(std::string_view id) = 0;
    // Every host sees these records. False while only this host's own
    // record answers (NATS down): a handled item's ack is then all that
    // keeps another host from running it again, so acks must not wait for
    // the end of a slow batch.
    virtual bool shared() { return true; }
};

class WorkQueue {
public:
    virtual ~WorkQueue() = default;
    virtual std::string_view backendName() const = 0;
    // Connected and its topology declared.
    virtual bool healthy() const = 0;
    virtual Result<PublishAck> publish(const PublishRequest& request) = 0;
    // Declares what the domain needs and opens a consumer for one worker.
    virtual Result<std::unique_ptr<Consumer>> openConsumer(const ConsumerSpec& spec) = 0;
    // The idempotency record, for one worker.
    virtual Result<std::unique_ptr<DoneStore>> openDoneStore() = 0;
};

// `work_<epoch-ns>_<counter>`; the counter starts at a random value per
// process so two publishers in the same nanosecond do not collide.
std::string generateWorkId();

}  // namespace kanban::host::broker
