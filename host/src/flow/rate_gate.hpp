// One domain's side of its rate_limit on this host. A worker that wants to
// start items enters the gate (one worker of the domain at a time), fetches
// at most rate_burst items, reserves their start from the shared TAT
// (RateStore), waits for it and leaves; its handlers then run while the
// next worker fetches. So a host holds at most one batch of rate_burst
// items waiting for their start, and everything over the limit waits in
// the broker, pulled by nobody.
//
// When the shared state cannot be read (NATS down: the RabbitMQ fallback),
// the host limits itself to rate / workers.hosts, from a TAT of its own,
// and says so in the log once.
#pragma once

#include "flow/rate_limit.hpp"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace kanban::host::flow {

class RateGate {
public:
    RateGate(std::shared_ptr<RateStore> store, std::string domain)
        : store_(std::move(store)), domain_(std::move(domain)) {}

    // One worker's turn at the gate; leaves it when destroyed or left.
    class Turn {
    public:
        Turn() = default;
        explicit Turn(RateGate* gate) : gate_(gate) {}
        Turn(Turn&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
        Turn& operator=(Turn&& other) noexcept {
            leave();
            gate_ = std::exchange(other.gate_, nullptr);
            return *this;
        }
        ~Turn() { leave(); }
        bool held() const { return gate_ != nullptr; }
        void leave() {
            if (gate_ != nullptr) std::exchange(gate_, nullptr)->leave();
        }

    private:
        RateGate* gate_ = nullptr;
    };

    // A held turn when the gate was free within `wait`.
    Turn enter(std::chrono::milliseconds wait) {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, wait, [&] { return !busy_; })) return Turn();
        busy_ = true;
        return Turn(this);
    }

    // The unix time (µs) from which `n` fetched items may start. Called with
    // the gate entered. `hosts`: the share of this host when on its own.
    std::int64_t reserve(std::int64_t n, const RateLimit& rate, std::int64_t burst, std::int64_t hosts);

private:
    std::shared_ptr<RateStore> store_;
    const std::string domain_;
    void leave() {
        {
            std::lock_guard lock(mu_);
            busy_ = false;
        }
        cv_.notify_one();
    }
    // (Not std::timed_mutex: TSan in GCC 12 misreads its timed lock.)
    std::mutex mu_;
    std::condition_variable cv_;
    bool busy_ = false;  // a worker has its turn
    std::int64_t local_tat_us_ = 0;  // the fallback's own
    bool on_own_ = false;           // logged once per outage
};

}  // namespace kanban::host::flow
