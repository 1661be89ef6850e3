// Delayed items (docs/design.md: Kanban-Not-Before) wait in the stream
// `<stream>_DELAYED`, out of their domain's way, and one thread per host
// moves each to its work subject when it is due.
//
// Every host pulls from the one durable consumer `delayed_mover`, so an item
// is moved by one host at a time. A fetched item not yet due is nak'd with
// its remaining delay: the server hands it out again then, from its own
// redelivery timer (persisted with the consumer, so a restarted server
// keeps it), and meanwhile nobody asks about it: a waiting item costs one
// delivery and one nak in all, however long it waits. The header decides,
// never the timer alone: an item handed out early is nak'd again.
//
// A due item is published to `kanban.<priority>.<domain>` as a copy
// (JetStream::publishCopy: Kanban-Id keeps its work id; Nats-Msg-Id is its
// place in the delayed stream, so a move repeated after a crash before the
// ack is dropped by the work stream's dedup), then acked. Deliveries are
// not attempts: MaxDeliver is unlimited and the work item starts at
// attempt 1.
#pragma once

#include "broker/jetstream.hpp"

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

struct __natsSubscription;
struct __natsMsg;

namespace kanban::host::broker {

class DelayedMover {
public:
    explicit DelayedMover(JetStream& nats) : nats_(nats) {}
    ~DelayedMover() { stop(); }
    DelayedMover(const DelayedMover&) = delete;
    DelayedMover& operator=(const DelayedMover&) = delete;

    void start();
    void stop();  // joins; a move under way finishes first

private:
    void run();
    Status subscribe();
    void dropSubscription();
    // Moves `m` when due, else puts it back until then.
    void handle(__natsMsg* m);
    bool sleepUnlessStopped(std::chrono::milliseconds d);

    JetStream& nats_;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;  // mu_
    std::mutex sub_mu_;                  // sub_ itself: stop() unsubscribes it to end a waiting fetch
    __natsSubscription* sub_ = nullptr;  // made and destroyed by the mover thread
};

}  // namespace kanban::host::broker
