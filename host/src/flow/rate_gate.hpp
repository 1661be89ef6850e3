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
#include <memory>
#include <mutex>
#include <string>

namespace kanban::host::flow {

class RateGate {
public:
    RateGate(std::shared_ptr<RateStore> store, std::string domain)
        : store_(std::move(store)), domain_(std::move(domain)) {}

    // Owns the lock when entered within `wait`.
    std::unique_lock<std::timed_mutex> enter(std::chrono::milliseconds wait) {
        return std::unique_lock<std::timed_mutex>(gate_, wait);
    }

    // The unix time (µs) from which `n` fetched items may start. Called with
    // the gate entered. `hosts`: the share of this host when on its own.
    std::int64_t reserve(std::int64_t n, const RateLimit& rate, std::int64_t burst, std::int64_t hosts);

private:
    std::shared_ptr<RateStore> store_;
    const std::string domain_;
    std::timed_mutex gate_;
    std::int64_t local_tat_us_ = 0;  // the fallback's own
    bool on_own_ = false;           // logged once per outage
};

}  // namespace kanban::host::flow
