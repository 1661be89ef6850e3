// NATS JetStream first, RabbitMQ when NATS is unreachable (docs/design.md §5).
//
// Publishing: to NATS while it is connected; when it is not, or a publish
// to it fails for a reason other than the request itself (a timeout, no
// JetStream answering), to RabbitMQ. Back to NATS as soon as it is healthy
// again. An item whose NATS publish timed out but was stored anyway then
// exists twice, with one id: idempotency absorbs the copy.
//
// Consuming: every worker drains both. It checks RabbitMQ without waiting
// at every fetch and waits on NATS; while NATS is down it waits on RabbitMQ.
// So nothing published during an outage is stranded when NATS returns.
// Priority order holds within each broker, not across the two.
//
// Without RabbitMQ, a publish rides out a NATS reconnect (to another node
// of a cluster, or the same server back) for up to kNatsOnlyWait.
//
// Idempotency: the JetStream bucket while NATS is connected. While it is
// down, each host's local record is all there is (plus the records written
// meanwhile, which are stored in the bucket when NATS returns): a RabbitMQ
// item redelivered to another host during an outage can run twice.
#pragma once

#include "broker/inspection.hpp"
#include "broker/jetstream.hpp"
#include "broker/rabbitmq.hpp"

#include <functional>
#include <atomic>
#include <chrono>

namespace kanban::host::broker {

class PendingRecords;

class Failover final : public WorkQueue, public Inspector {
public:
    // `nats` or `rabbit` may be null (not configured, or kanbanctl found no
    // NATS server); `on_switch(to)` is called when the active backend changes.
    Failover(JetStream* nats, RabbitMq* rabbit, std::function<void(std::string_view to)> on_switch = {});

    // The backend publishes go to now: "nats", "rabbitmq" or "none".
    std::string_view backendName() const override;
    bool healthy() const override;
    std::string warmingUp() const override;
    Result<PublishAck> publish(const PublishRequest& request) override;
    Result<std::unique_ptr<Consumer>> openConsumer(const ConsumerSpec& spec) override;
    Result<std::unique_ptr<DoneStore>> openDoneStore() override;

    // Probes RabbitMQ if it is down, then re-evaluates the active backend
    // (the coordinator, every tick).
    void refresh() override;

    // Inspector: every configured backend is asked, the answers merged.
    bool reachable(std::string_view backend) const override;
    QueueReport inspect(const std::vector<std::string>& domains, const InspectOptions& options) override;
    DeadLetterListing deadLetters(std::string_view domain, const DeadLetterQuery& query) override;
    WaitingSearch findWaiting(const std::vector<std::string>& domains, std::string_view id, std::size_t max_scan,
                              std::map<std::string, std::string>& unavailable) override;
    ReplayReport replay(std::string_view domain, const DeadLetterFilter& filter) override;
    ReplayReport purge(std::string_view domain, const DeadLetterFilter& filter) override;
    // Which backend served the last successful publish.
    std::string_view lastPublishBackend() const;


    static constexpr auto kNatsOnlyWait = std::chrono::seconds(15);

private:
    Result<PublishAck> publishNatsOnly(const PublishRequest& request);
    bool natsUsable() const;
    std::vector<BackendInspection*> inspectable() const;  // the configured backends
    ReplayReport settle(std::string_view domain, const DeadLetterFilter& filter, const Republish& republish);
    void setActive(const char* backend);  // a string literal
    void publishedTo(const char* backend);  // active, and the last publish's backend

    JetStream* nats_;
    RabbitMq* rabbit_;
    std::function<void(std::string_view)> on_switch_;
    std::atomic<const char*> active_{nullptr};
    std::atomic<const char*> last_publish_{""};
    std::shared_ptr<PendingRecords> pending_;
};

}  // namespace kanban::host::broker
