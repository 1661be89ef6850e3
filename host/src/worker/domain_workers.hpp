// The worker threads of one domain: pull a batch (never more than
// pull_batch items in hand), run each item through the domain's plugin,
// settle it with the broker, pull again. Pulling only when there is
// capacity is the backpressure: the host cannot be overloaded.
#pragma once

#include "broker/work_queue.hpp"
#include "config/config.hpp"
#include "plugin/plugin.hpp"
#include "worker/local_done_record.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace kanban::host::worker {

struct DomainCounters {
    std::atomic<std::uint64_t> pulled{0};
    std::atomic<std::uint64_t> ok{0};             // handler returned ok; recorded and acked
    std::atomic<std::uint64_t> duplicates{0};     // already done: acked without calling the handler
    std::atomic<std::uint64_t> retried{0};        // handed back with a backoff delay
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> timed_out{0};      // the handler overran its time
    std::atomic<std::uint64_t> released{0};       // not started at shutdown: back to the broker
    std::atomic<std::uint64_t> lease_lost{0};     // held past the ack wait: left to the broker's redelivery
    std::atomic<std::uint64_t> lookup_failures{0};  // batches the idempotency store could not check
    std::atomic<std::uint64_t> record_failures{0};  // done records not confirmed (the local record still holds them)
};

struct WorkerSettings {
    config::DomainConfig domain;
    config::WorkersConfig workers;
    config::RetryConfig retry;
    std::chrono::milliseconds idle_wait{100};  // how long an idle worker waits per fetch
};

class DomainWorkers {
public:
    // `done` is the process-wide local idempotency record; it must outlive this.
    DomainWorkers(WorkerSettings settings, std::shared_ptr<const plugin::Instance> handler, broker::WorkQueue& queue,
                  LocalDoneRecord& done);
    ~DomainWorkers();  // stops and joins
    DomainWorkers(const DomainWorkers&) = delete;
    DomainWorkers& operator=(const DomainWorkers&) = delete;

    // Starts `count` worker threads.
    void start(std::size_t count);
    // Asks every worker to stop: no new fetch; items in hand that were not
    // started are released for prompt redelivery; the one being handled finishes.
    void requestStop();
    void join();

    const DomainCounters& counters() const { return counters_; }
    const std::string& name() const { return settings_.domain.name; }

private:
    void run(std::size_t index);
    // Settles every item of the batch (or leaves it to the broker's
    // redelivery). Returns false when the idempotency store failed.
    bool handleBatch(broker::DeliveryBatch& batch, broker::DoneStore& store);
    // Runs one item; returns true when the handler succeeded (the caller
    // records and acks it), false when it was settled here.
    bool process(broker::Delivery& d);
    void settleFailure(broker::Delivery& d, bool permanent, const std::string& reason);
    bool sleepUnlessStopped(std::chrono::milliseconds d);

    WorkerSettings settings_;
    std::shared_ptr<const plugin::Instance> handler_;
    broker::WorkQueue& queue_;
    LocalDoneRecord& done_;
    DomainCounters counters_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::thread> threads_;
};

}  // namespace kanban::host::worker
