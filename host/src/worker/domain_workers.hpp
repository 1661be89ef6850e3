// The worker threads of one domain: pull a batch (never more than
// pull_batch items in hand), run each item through the domain's plugin,
// settle it with the broker, pull again. Pulling only when there is
// capacity is the backpressure: the host cannot be overloaded.
#pragma once

#include "broker/work_queue.hpp"
#include "config/config.hpp"
#include "metrics/metrics.hpp"
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

struct WorkerSettings {
    config::DomainConfig domain;
    config::WorkersConfig workers;
    config::RetryConfig retry;
    std::chrono::milliseconds idle_wait{100};  // how long an idle worker waits per fetch
};

class DomainWorkers {
public:
    // `done` (the process-wide local idempotency record) and `metrics` must outlive this.
    DomainWorkers(WorkerSettings settings, std::shared_ptr<const plugin::Instance> handler, broker::WorkQueue& queue,
                  LocalDoneRecord& done, metrics::DomainMetrics& metrics);
    ~DomainWorkers();  // stops and joins
    DomainWorkers(const DomainWorkers&) = delete;
    DomainWorkers& operator=(const DomainWorkers&) = delete;

    // Starts `count` worker threads.
    void start(std::size_t count);
    // Asks every worker to stop: no new fetch; items in hand that were not
    // started are released for prompt redelivery; the one being handled finishes.
    void requestStop();
    void join();

    const metrics::DomainMetrics& metrics() const { return metrics_; }
    std::size_t workers() const { return running_.load(); }  // any thread
    const std::string& name() const { return settings_.domain.name; }

private:
    void run(std::size_t index);
    // Settles every item of the batch (or leaves it to the broker's
    // redelivery). Returns false when the idempotency store failed.
    bool handleBatch(broker::DeliveryBatch& batch, broker::DoneStore& store);
    // Runs one item; returns true when the handler succeeded (the caller
    // records and acks it), false when it was settled here.
    bool process(broker::Delivery& d);
    void ack(broker::Delivery& d);
    // Retries with backoff, or dead-letters once attempts are used up.
    void retryOrDeadLetter(broker::Delivery& d, const std::string& reason);
    void deadLetter(broker::Delivery& d, metrics::DeadLetterReason why, const std::string& reason);
    bool sleepUnlessStopped(std::chrono::milliseconds d);

    WorkerSettings settings_;
    std::shared_ptr<const plugin::Instance> handler_;
    broker::WorkQueue& queue_;
    LocalDoneRecord& done_;
    metrics::DomainMetrics& metrics_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::thread> threads_;
    std::atomic<std::size_t> running_{0};
};

}  // namespace kanban::host::worker
