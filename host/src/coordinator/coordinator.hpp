// The coordinator (docs/design.md §5): every `coordinator.health_interval_ms`,
// on a thread of its own, it
//   - samples each domain's queue depth on every broker (one inspection
//     through broker::Inspector) and keeps a window of `depth_window`
//     samples per domain and of the total,
//   - sizes each domain's pool to max(min, min(max, avg_depth / 20 + 2)),
//     within what the pool can run (PoolControl::capacity),
//   - counts stalled items (in a handler longer than stall_threshold_ms),
//   - reports orphaned items (on subjects no configured domain consumes),
//   - watches the dead-letter queues (a gauge, a warning when one grows),
//   - keeps the oldest item's age per domain,
//   - probes the brokers and follows the active backend.
// The broker I/O of a tick runs without any lock held: /health and the
// scheduler read the last finished tick (snapshot()) and never wait on it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "broker/inspection.hpp"
#include "config/config.hpp"
#include "metrics/metrics.hpp"
#include "worker/pool_control.hpp"

namespace kanban::host::coordinator {

// The pool size for an average depth (docs/design.md §5).
std::int64_t targetWorkers(double avg_depth, std::int64_t min, std::int64_t max);

// A configured domain as the coordinator sees it; `pool` is null for a
// domain that did not start (its plugin failed): sampled, never scaled.
struct Domain {
    std::string name;
    std::shared_ptr<worker::PoolControl> pool;
};

// What the last finished tick found.
struct Snapshot {
    struct PerDomain {
        std::uint64_t depth = 0;  // both brokers, waiting and in flight
        double oldest_item_age_s = 0;
        std::uint64_t dead_letters = 0;  // both brokers
    };
    std::map<std::string, PerDomain> domains;
    std::deque<std::uint64_t> depth_samples;  // total depth, oldest first, at most depth_window
    std::uint64_t orphaned = 0;
};

class Coordinator {
public:
    // `domains` lists the configured domains (called once per tick, on the
    // coordinator's thread). `on_tick` runs at the end of each tick (the
    // runtime schedules' sync).
    Coordinator(const config::Config& cfg, broker::Inspector& brokers, metrics::Metrics& metrics,
                std::function<std::vector<Domain>()> domains, std::function<void()> on_tick = {});
    ~Coordinator();  // stops
    Coordinator(const Coordinator&) = delete;
    Coordinator& operator=(const Coordinator&) = delete;

    // Ticks at once, then every health interval, until stop().
    void start();
    void stop();
    // A reloaded configuration: interval, window, thresholds, workers.min/max
    // (from the next tick; a new interval ends the current wait).
    void reconfigure(const config::Config& cfg);
    // One tick, on the caller's thread (start() calls it on its own).
    void tick();

    std::shared_ptr<const Snapshot> snapshot() const;
    // The domain's depth at the last tick (nullopt before the first, or
    // for a domain it has not sampled yet).
    std::optional<std::uint64_t> lastDepth(const std::string& domain) const;

private:
    struct Window {
        std::deque<std::uint64_t> samples;
        double oldest_item_age_s = 0;
        std::uint64_t dead_letters = 0;
    };

    void run();
    std::shared_ptr<const config::Config> cfg() const;
    void reportOrphans(const std::map<std::string, std::uint64_t>& unclaimed);

    broker::Inspector& brokers_;
    metrics::Metrics& metrics_;
    const std::function<std::vector<Domain>()> domains_;
    const std::function<void()> on_tick_;

    mutable std::mutex mu_;  // cfg_, snapshot_, stop_: never held during broker I/O
    std::condition_variable cv_;
    std::shared_ptr<const config::Config> cfg_;
    std::shared_ptr<const Snapshot> snapshot_;
    bool stop_ = false;
    std::thread thread_;

    // The tick's own state: touched by one tick at a time (tick_mu_).
    std::mutex tick_mu_;
    std::map<std::string, Window> windows_;
    std::deque<std::uint64_t> total_samples_;
    std::map<std::string, std::uint64_t> orphans_logged_;
    std::uint64_t orphaned_ = 0;
};

}  // namespace kanban::host::coordinator
