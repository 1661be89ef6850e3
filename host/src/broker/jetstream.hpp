// NATS JetStream backend (DESIGN §3).
//
// Topology: work stream `<stream>` (WorkQueue retention, file storage,
// subjects kanban.high.*, kanban.normal.*, kanban.low.*, a 2-minute
// duplicate window) and dead-letter stream `<stream>_DLQ` (kanban.dlq.*).
// One durable pull consumer per (domain, priority), named
// `<domain>_<priority>`, shared by every worker and every host.
// Idempotency record: KV bucket `<stream>_DONE` (one key per completed work
// id, base64url-encoded, expiring after `done_ttl_ms`).
#pragma once

#include "broker/work_queue.hpp"

#include <array>
#include <map>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

struct __natsConnection;
struct __jsCtx;
struct __natsMsg;
struct __kvStore;

namespace kanban::host::broker {

// Messages stored per subject of a stream: (subject, count).
using SubjectCounts = std::vector<std::pair<std::string, std::uint64_t>>;

struct JetStreamOptions {
    std::vector<std::string> servers{"nats://127.0.0.1:4222"};
    std::string stream = "KANBAN";
    int replicas = 1;
    std::int64_t max_msgs = 1'000'000;  // per stream (work and dead-letter), discard new
    std::int64_t max_bytes = 1LL << 30;
    // How long a completed id is remembered: longer than any redelivery
    // (ack wait) and the 2-minute duplicate window, so a late duplicate of
    // a finished item is acked without running its handler again.
    std::int64_t done_ttl_ms = 24LL * 3600 * 1000;
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
    Result<std::unique_ptr<DoneStore>> openDoneStore() override;

    // Items waiting plus delivered-unacked, per priority (consumers not yet
    // declared count as empty).
    Result<std::array<std::uint64_t, 3>> queueDepth(std::string_view domain);

    using DeadLetter = broker::DeadLetter;
    // Oldest first, at most `limit`.
    Result<std::vector<DeadLetter>> deadLetters(std::string_view domain, std::size_t limit);
    // Removes a dead letter (after its replay was published).
    Status removeDeadLetter(std::uint64_t sequence);

    // Messages per subject in the work stream (for orphan detection), or
    // with `dead_letters` in the dead-letter stream.
    Result<SubjectCounts> subjectCounts(bool dead_letters = false);
    // When the oldest item still in the work stream for `domain` (waiting or
    // in a handler) was published; nullopt when there is none.
    Result<std::optional<std::int64_t>> oldestItemUnixMs(std::string_view domain);

    // Runtime schedules (name -> JSON) in KV bucket `<stream>_SCHEDULES`,
    // shared by every host; created on first use.
    Status putSchedule(const std::string& name, const std::string& json);
    // false if there was no such schedule.
    Result<bool> deleteSchedule(const std::string& name);
    Result<std::map<std::string, std::string>> storedSchedules();

    // Declares (or updates) both streams; idempotent, cheap once done.
    Status ensureStreams();

    // Used by deliveries: publish the DLQ copy and wait for its ack.
    Status publishDeadLetter(__natsMsg* original, std::uint64_t stream_sequence, const std::string& id,
                             const std::string& domain, std::uint32_t attempts, std::string_view reason);

    const std::string& streamName() const { return options_.stream; }
    std::string doneBucket() const { return options_.stream + "_DONE"; }
    std::string deadLetterStream() const { return options_.stream + "_DLQ"; }
    std::string scheduleBucket() const { return options_.stream + "_SCHEDULES"; }
    __jsCtx* js() const { return js_; }
    __natsConnection* connection() const { return nc_; }

private:
    using Headers = std::vector<std::pair<std::string, std::string>>;

    explicit JetStream(JetStreamOptions options) : options_(std::move(options)) {}
    Status ensureConsumer(const ConsumerSpec& spec, Priority priority);
    Result<__kvStore*> scheduleStore();  // the caller destroys it
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
// KV key for a work id: base64url without padding (any bytes are safe).
std::string doneKey(std::string_view id);

}  // namespace kanban::host::broker
