// RabbitMQ backend (docs/design.md §3), the fallback when NATS is unreachable.
//
// Topology, declared by whoever uses a domain first (idempotent):
//   exchange `kanban` (topic)      -> queue `kanban.<domain>` bound `*.<domain>`:
//                                     durable, classic, x-max-priority 2
//                                     (low 0, normal 1, high 2), DLX `kanban.dlx`
//   exchange `kanban.dlx` (topic)  -> queue `kanban.dlq.<domain>` bound `*.<domain>`
//   queue `kanban.retry.<domain>.<n>` (no consumer): a retried item waits
//     there for its backoff (per-message expiration), then expires back into
//     `kanban` with routing key `retry.<domain>` (so into `kanban.<domain>`;
//     its priority travels in the AMQP priority property).
// Messages: persistent, message_id = work id, timestamp, headers
// `kanban-deadline` and `kanban-created` (epoch ms) and `kanban-attempts`.
//
// Classic queues have no delivery counter, so the host counts attempts in
// the `kanban-attempts` header: a retry publishes a copy with the count
// raised into the retry queue, and acks the original only once the broker
// confirmed the copy. Retry queue <n> holds the copies of attempt n, whose
// delays differ only by jitter: a classic queue expires messages at its
// head only, so a copy waits at most its nominal backoff.
#pragma once

#include "broker/amqp.hpp"
#include "broker/inspection.hpp"
#include "broker/subjects.hpp"
#include "broker/work_queue.hpp"

#include <atomic>
#include <functional>
#include <mutex>

namespace kanban::host::broker {

struct RabbitMqOptions {
    std::string url = "amqp://guest:guest@127.0.0.1:5672";
    std::chrono::milliseconds connect_timeout{2000};
    // A publish not confirmed in this time fails (a broker blocked by a
    // memory or disk alarm never answers): the caller hears of it in time.
    std::chrono::milliseconds confirm_timeout{5000};
    std::string connection_name = "kanband";
};

class RabbitMq final : public WorkQueue, public BackendInspection {
public:
    explicit RabbitMq(RabbitMqOptions options) : options_(std::move(options)) {}

    std::string_view backendName() const override { return "rabbitmq"; }
    // The last connection attempt or operation succeeded.
    bool healthy() const override { return reachable_.load(); }
    Result<PublishAck> publish(const PublishRequest& request) override;
    Result<std::unique_ptr<Consumer>> openConsumer(const ConsumerSpec& spec) override;
    // No store of its own: idempotency uses the JetStream bucket (failover.hpp).
    Result<std::unique_ptr<DoneStore>> openDoneStore() override;

    // Connects if needed (bounded by the connect timeout); updates healthy().
    Status probe();
    // Ready messages in `kanban.<domain>` (0 if it does not exist yet).
    Result<std::uint64_t> queueDepth(std::string_view domain);
    Result<std::uint64_t> deadLetterDepth(std::string_view domain);
    // BackendInspection. Depths are per domain queue (no priority levels).
    bool answering() const override { return healthy(); }
    Result<BackendReport> inspect(const std::vector<std::string>& domains, const InspectOptions& options) override;
    // Oldest first, at most `limit`. Reading takes the messages and hands
    // them back unacknowledged: the queue keeps them, in order.
    Result<DeadLetterPage> deadLetters(std::string_view domain, const DeadLetterQuery& query) override;
    Result<ReplayResults> settleDeadLetters(std::string_view domain, const DeadLetterFilter& filter,
                                            const Republish& republish) override;

    // Used by consumers and deliveries.
    const RabbitMqOptions& options() const { return options_; }
    void noteReachable(bool reachable) { reachable_ = reachable; }
    Result<std::unique_ptr<amqp::Connection>> connect(const std::string& role);
    // Declares what `domain` needs on `c` (cached per connection).
    static Status declareDomain(amqp::Connection& c, std::string_view domain);

private:
    Result<std::uint64_t> readyMessages(const std::string& queue);

    RabbitMqOptions options_;
    std::mutex mu_;  // publisher_
    std::unique_ptr<amqp::Connection> publisher_;
    std::atomic<bool> reachable_{false};
};

}  // namespace kanban::host::broker
