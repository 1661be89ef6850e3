// NATS JetStream backend (docs/design.md §3): connection, topology and
// publishing here; the pull consumer (jetstream_consumer.cpp), the
// idempotency record (jetstream_done_store.cpp) and inspection: depths,
// dead letters, replay (jetstream_inspection.cpp).
//
// Topology: work stream `<stream>` (WorkQueue retention, file storage,
// subjects kanban.high.*, kanban.normal.*, kanban.low.*, a 2-minute
// duplicate window) and dead-letter stream `<stream>_DLQ` (kanban.dlq.*).
// One durable pull consumer per (domain, priority), named
// `<domain>_<priority>`, shared by every worker and every host.
// Idempotency record: KV bucket `<stream>_DONE`, expiring after
// `done_ttl_ms`: one done-log message per handled batch listing its ids
// (done_log.hpp), read back by every host into a local index
// (jetstream_done_mirror.hpp), and per-id attempt records. Names: subjects.hpp.
#pragma once

#include "broker/inspection.hpp"
#include "broker/subjects.hpp"
#include "broker/work_queue.hpp"

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

struct __natsConnection;
struct __jsCtx;
struct __natsMsg;

namespace kanban::host::broker {

class DoneMirror;

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
    // Completed ids the local index of that record holds at most (16 bytes
    // a slot; see done_index.hpp). Beyond it the oldest are forgotten.
    std::size_t done_index_max_ids = 1'000'000;
    // true (daemon): start while NATS is down and keep reconnecting forever.
    // false (CLI): fail at once when no server answers.
    bool keep_trying = true;
    std::string connection_name = "kanband";
};

class JetStream final : public WorkQueue, public BackendInspection {
public:
    static Result<std::unique_ptr<JetStream>> connect(const JetStreamOptions& options);
    ~JetStream() override;

    std::string_view backendName() const override { return "nats"; }
    // Connected and the streams are known to be declared.
    bool healthy() const override;
    bool connected() const;
    Result<PublishAck> publish(const PublishRequest& request) override;
    // Declares the domain's consumers once per configuration (not per
    // worker), then subscribes. The streams are declared once per process;
    // if the server lost them (a new store), the first open that fails
    // declares everything again.
    Result<std::unique_ptr<Consumer>> openConsumer(const ConsumerSpec& spec) override;
    Result<std::unique_ptr<DoneStore>> openDoneStore() override;

    // BackendInspection (jetstream_inspection.cpp)
    bool answering() const override { return connected(); }
    Result<BackendReport> inspect(const std::vector<std::string>& domains, const InspectOptions& options) override;
    Result<DeadLetterPage> deadLetters(std::string_view domain, const DeadLetterQuery& query) override;
    Result<ReplayResults> settleDeadLetters(std::string_view domain, const DeadLetterFilter& filter,
                                            const Republish& republish) override;
    // Reads the work stream by sequence (jetstream_item_search.cpp), at
    // most `max_scan` sequences, until the id turns up on a domain's subject.
    Result<WaitingSearch> findWaiting(const std::vector<std::string>& domains, std::string_view id,
                                      std::size_t max_scan) override;

    // Items waiting plus delivered-unacked, per priority (consumers not yet
    // declared count as empty). With `stored` (messages per subject) and
    // `swept`, a subject holding more than its consumer accounts for loses
    // what lies below the consumer's ack floor; how many is added to `swept`.
    Result<std::array<std::uint64_t, 3>> queueDepth(std::string_view domain, const SubjectCounts* stored = nullptr,
                                                    std::uint64_t* swept = nullptr);
    // Messages per subject in the work stream (for orphan detection), or
    // with `dead_letters` in the dead-letter stream.
    Result<SubjectCounts> subjectCounts(bool dead_letters = false);
    // When the oldest item still in the work stream for `domain` (waiting or
    // in a handler) was published; nullopt when there is none.
    Result<std::optional<std::int64_t>> oldestItemUnixMs(std::string_view domain);

    // Declares (or updates) both streams and the done bucket; idempotent,
    // free once done.
    Status ensureStreams();

    // Used by deliveries: publish the DLQ copy and wait for its ack.
    Status publishDeadLetter(__natsMsg* original, std::uint64_t stream_sequence, const std::string& id,
                             const std::string& domain, std::uint32_t attempts, std::string_view reason,
                             std::string_view code);

    // Used by deliveries and the delayed mover: a copy of `original` (its
    // body, Kanban-Deadline, -Created and -Not-Before) on `subject`, deduplicated
    // by `msg_id`, carrying the work id `id` as Kanban-Id; waits for its ack.
    Result<PublishAck> publishCopy(__natsMsg* original, const std::string& subject, const std::string& msg_id,
                                   const std::string& id);

    const JetStreamOptions& options() const { return options_; }
    const std::string& streamName() const { return options_.stream; }
    std::string doneBucket() const { return doneBucketName(options_.stream); }
    std::string deadLetterStream() const { return deadLetterStreamName(options_.stream); }
    std::string delayedStream() const { return delayedStreamName(options_.stream); }
    __jsCtx* js() const { return js_; }
    __natsConnection* connection() const { return nc_; }
    // The local index of the done record, shared by this connection's stores.
    DoneMirror& doneMirror();
    // Empty when connected and the index of the done record is built; else why not.
    std::string doneIndexTrouble();

private:
    using Headers = std::vector<std::pair<std::string, std::string>>;

    explicit JetStream(JetStreamOptions options);
    Status ensureConsumer(const ConsumerSpec& spec, Priority priority);
    // The server may have lost the topology: declare everything again next time.
    void forgetTopology();
    Status removeDeadLetter(std::uint64_t sequence);
    // Purges `subject` below `sequence`; how many messages went.
    Result<std::uint64_t> purgeBelow(const std::string& subject, std::uint64_t sequence);
    // Publishes and waits for the stream's ack.
    Result<PublishAck> publishSync(const std::string& subject, std::string_view body, const Headers& headers);

    JetStreamOptions options_;
    __natsConnection* nc_ = nullptr;
    __jsCtx* js_ = nullptr;
    std::mutex topology_mu_;
    std::atomic<bool> streams_ready_{false};
    std::mutex consumers_mu_;
    std::map<std::string, std::string> declared_consumers_;  // durable -> its configuration as declared (consumers_mu_)
    std::mutex mirror_mu_;
    std::unique_ptr<DoneMirror> mirror_;  // made on first use (mirror_mu_)
};


}  // namespace kanban::host::broker
