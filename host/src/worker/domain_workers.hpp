// The worker threads of one domain: pull a batch (never more than
// pull_batch items in hand), run each item through the domain's plugin,
// settle it with the broker, pull again. Pulling only when there is
// capacity is the backpressure: the host cannot be overloaded.
#pragma once

#include "broker/work_queue.hpp"
#include "config/config.hpp"
#include "plugin/plugin.hpp"

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
    std::atomic<std::uint64_t> ok{0};
    std::atomic<std::uint64_t> retried{0};
    std::atomic<std::uint64_t> failed{0};
    std::atomic<std::uint64_t> dead_lettered{0};
    std::atomic<std::uint64_t> released{0};
};

struct WorkerSettings {
    config::DomainConfig domain;
    config::WorkersConfig workers;
    config::RetryConfig retry;
    std::chrono::milliseconds idle_wait{100};  // how long an idle worker waits per fetch
};

class DomainWorkers {
public:
    DomainWorkers(WorkerSettings settings, std::shared_ptr<const plugin::Instance> handler, broker::WorkQueue& queue);
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
    void process(broker::Delivery& d);
    void settleFailure(broker::Delivery& d, bool permanent, const std::string& reason);
    bool sleepUnlessStopped(std::chrono::milliseconds d);

    WorkerSettings settings_;
    std::shared_ptr<const plugin::Instance> handler_;
    broker::WorkQueue& queue_;
    DomainCounters counters_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::thread> threads_;
};

}  // namespace kanban::host::worker
