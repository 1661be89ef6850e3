// NATS JetStream backend (DESIGN §3).
//
// Topology: work stream `<stream>` (WorkQueue retention, file storage,
// subjects kanban.high.*, kanban.normal.*, kanban.low.*, a 2-minute
// duplicate window) and dead-letter stream `<stream>_DLQ` (kanban.dlq.*).
// One durable pull consumer per (domain, priority), named
// `<domain>_<priority>`, shared by every worker and every host.
#pragma once

#include "broker/work_queue.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

struct __natsConnection;
struct __jsCtx;
struct __natsMsg;

namespace kanban::host::broker {

struct JetStreamOptions {
    std::vector<std::string> servers{"nats://127.0.0.1:4222"};
    std::string stream = "KANBAN";
    int replicas = 1;
    // true (daemon): start while NATS is down and keep reconnecting forever.
    // false (CLI): fail at once when no server answers.
    bool keep_trying = true;
    std::string connection_name = "kanband";
};

class JetStream final : public WorkQueue {
public:
    static Result<std::unique_ptr<JetStream>> connect(const JetStreamOptions& options);
    ~JetStream() override;

    std::string_view backendName() const override { return "nats"; }
    bool healthy() const override;
    bool connected() const;
    Result<PublishAck> publish(const PublishRequest& request) override;
    Result<std::unique_ptr<Consumer>> openConsumer(const ConsumerSpec& spec) override;

    // Declares (or updates) both streams; idempotent, cheap once done.
    Status ensureStreams();

    // Used by deliveries: publish the DLQ copy and wait for its ack.
    Status publishDeadLetter(__natsMsg* original, const std::string& id, const std::string& domain,
                             std::uint32_t attempts, std::string_view reason);

    const std::string& streamName() const { return options_.stream; }
    __jsCtx* js() const { return js_; }

private:
    using Headers = std::vector<std::pair<std::string, std::string>>;

    explicit JetStream(JetStreamOptions options) : options_(std::move(options)) {}
    Status ensureConsumer(const ConsumerSpec& spec, Priority priority);
    // Publishes and waits for the stream's ack.
    Result<PublishAck> publishSync(const std::string& subject, std::string_view body, const Headers& headers);

    JetStreamOptions options_;
    __natsConnection* nc_ = nullptr;
    __jsCtx* js_ = nullptr;
    std::mutex topology_mu_;
    std::atomic<bool> streams_ready_{false};
};

// Durable `<domain>_<priority>`, subject `kanban.<priority>.<domain>`, DLQ `kanban.dlq.<domain>`.
std::string durableName(std::string_view domain, Priority priority);
std::string workSubject(std::string_view domain, Priority priority);
std::string deadLetterSubject(std::string_view domain);

}  // namespace kanban::host::broker
