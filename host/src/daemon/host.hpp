// The running host: every part of kanband that uses the broker
// connections, built in dependency order (daemon.cpp owns the connections
// and the process; this owns what runs on them).
#pragma once

#include <signal.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin/admin_server.hpp"
#include "admin/admin_service.hpp"
#include "broker/failover.hpp"
#include "broker/jetstream.hpp"
#include "broker/jetstream_delayed_mover.hpp"
#include "broker/jetstream_leases.hpp"
#include "broker/jetstream_rates.hpp"
#include "broker/jetstream_pause_store.hpp"
#include "broker/jetstream_schedule_store.hpp"
#include "config/config.hpp"
#include "coordinator/coordinator.hpp"
#include "flow/in_flight_leases.hpp"
#include "flow/rate_limit.hpp"
#include "metrics/metrics.hpp"
#include "pause/domain_pauses.hpp"
#include "plugin/registry.hpp"
#include "scheduler/scheduler.hpp"
#include "scheduler/stored_jobs.hpp"
#include "status/item_status.hpp"
#include "tracing/tracer.hpp"
#include "worker/domain_table.hpp"

namespace kanban::host::daemon {

// SIGTERM, SIGINT and SIGHUP: blocked in every thread, taken by Host::serve().
sigset_t handledSignals();
void setLogLevel(const std::string& level);

// Every part of the running host that uses the broker connections, built
// in dependency order. stop() takes them down in the reverse order; the
// connections themselves belong to run() and close only after this is gone.
class Host {
public:
    Host(const std::string& path, const config::Config& cfg, metrics::Metrics& metrics, broker::Failover& brokers,
         broker::JetStream& nats, const std::string& token, worker::StateDir* state_dir)
        : path_(path),
          state_dir_(state_dir),
          cfg_(std::make_shared<const config::Config>(cfg)),
          metrics_(metrics),
          brokers_(brokers),
          schedule_store_(nats),
          scheduler_(cfg, schedulerHooks()),
          stored_jobs_(schedule_store_, scheduler_, [this] { return config(); }),
          pause_store_(nats),
          leases_(std::make_shared<broker::JetStreamLeases>(nats)),
          rates_(std::make_shared<broker::JetStreamRates>(nats)),
          tracer_(makeTracer(cfg, metrics)),
          delayed_mover_(nats),
          pauses_(pause_store_,
                  [this](const std::string& d, bool paused) {
                      if (auto pool = domains_.pool(d)) pool->setPaused(paused);
                  }),
          coordinator_(
              cfg, brokers, metrics, [this] { return coordinated(); },
              [this] {
                  stored_jobs_.sync();
                  pauses_.sync();
              }),
          items_(brokers, domains_, [&brokers] { return brokers.openDoneStore(); }),
          service_({brokers, metrics, domains_, coordinator_, scheduler_, schedule_store_, pauses_, items_,
                    [this] { return config(); }, [this] { return controlTrouble(); }}),
          admin_(service_, token) {}

    Status start();
    void serve();  // the signal loop, until SIGTERM or SIGINT
    void stop();
    // A handler thread was abandoned (stop or reload): the process must end
    // without destructors, which the thread may still run into.
    bool abandonedAny() const { return abandoned_any_.load(); }

private:
    // [tracing]: the tracer and its exporter (null when off, or when the
    // endpoint is unusable: then logged, and kanband runs untraced).
    static std::shared_ptr<tracing::Tracer> makeTracer(const config::Config& cfg, metrics::Metrics& metrics);
    scheduler::Scheduler::Hooks schedulerHooks();
    worker::WorkerSettings workerSettings(const config::DomainConfig& d, const config::Config& c);
    void startDomain(const config::DomainConfig& d, const config::Config& c, plugin::Registry::Generation g);
    std::vector<coordinator::Domain> coordinated() const;
    std::shared_ptr<const config::Config> config() const {
        std::lock_guard lock(cfg_mu_);
        return cfg_;
    }
    void reload();
    void refuseReload(const std::string& why);
    // Charges the items the previous process left in handlers (its journal).
    void recoverInflight();
    // Stops a pool of a removed domain off the control thread, bounded.
    void retire(std::shared_ptr<worker::DomainWorkers> pool, std::int64_t timeout_ms);
    void watchdog(std::stop_token stop);
    std::string controlTrouble() const;

    const std::string path_;
    worker::StateDir* state_dir_;  // null: no in-flight journal
    mutable std::mutex cfg_mu_;
    std::shared_ptr<const config::Config> cfg_;  // cfg_mu_; replaced by a reload on the control thread
    metrics::Metrics& metrics_;
    broker::Failover& brokers_;
    worker::LocalDoneRecord done_;                    // this process's record of completed ids
    worker::AttemptLedger ledger_;                    // this process's attempt records
    std::unique_ptr<broker::DoneStore> sched_store_;  // the canaries' lookups, on the scheduler's thread
    broker::JetStreamScheduleStore schedule_store_;
    scheduler::Scheduler scheduler_;
    scheduler::StoredJobs stored_jobs_;
    worker::DomainTable domains_;
    broker::JetStreamPauseStore pause_store_;
    std::shared_ptr<flow::InFlightLeases> leases_;  // max_in_flight slots
    std::shared_ptr<flow::RateStore> rates_;        // rate_limit state
    std::shared_ptr<tracing::Tracer> tracer_;       // [tracing]; null when off
    broker::DelayedMover delayed_mover_;            // Kanban-Not-Before: moves due items to their work subject
    pause::DomainPauses pauses_;  // applied to domains_' pools
    plugin::Registry registry_;  // control thread only
    coordinator::Coordinator coordinator_;
    status::ItemLocator items_;
    admin::AdminService service_;
    admin::AdminServer admin_;
    std::atomic<std::int64_t> reload_started_ns_{0};  // steady clock; 0 = no reload running
    std::atomic<bool> abandoned_any_{false};
    std::mutex retiring_mu_;
    std::vector<std::thread> retiring_;  // retiring_mu_
    std::jthread watchdog_;
};

}  // namespace kanban::host::daemon
