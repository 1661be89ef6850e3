// Prometheus metrics (docs/design.md §6): one registry per process, families named
// `kanban_*` in base units, labels only from bounded sets (domain and
// priority from the config, outcome and reason from the lists below).
// Counters and histograms are updated by the workers; gauges by whoever
// owns the state (the daemon's sampler, the worker pools).
#pragma once

#include "common/priority.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace kanban::host::metrics {

// How a handler call ended (label `outcome` of kanban_items_processed_total).
enum class Outcome { ok, retry, fail, timeout };
inline constexpr std::array<std::string_view, 4> kOutcomes{"ok", "retry", "fail", "timeout"};

// Why an item went to the dead-letter queue (label `reason` of
// kanban_items_dead_lettered_total; the plugin's own text is in the DLQ
// header, never in a label).
enum class DeadLetterReason {
    handler_failed,           // the plugin returned fail
    retries_exhausted,        // retry (or timeout) on the last attempt
    deadline_exceeded,        // expired before the handler ran
    invalid_id,               // work id over the limit
    max_deliveries_exceeded,  // the broker's delivery limit (a safety net far above max_attempts) was reached
    handler_crashed,          // its last attempt was in a handler when the process died
};
inline constexpr std::array<std::string_view, 6> kDeadLetterReasons{
    "handler_failed", "retries_exhausted", "deadline_exceeded", "invalid_id", "max_deliveries_exceeded",
    "handler_crashed"};

// The reason whose label is `label` (retries_exhausted for an unknown one).
inline DeadLetterReason deadLetterReasonFrom(std::string_view label) {
    for (std::size_t i = 0; i < kDeadLetterReasons.size(); ++i)
        if (kDeadLetterReasons[i] == label) return static_cast<DeadLetterReason>(i);
    return DeadLetterReason::retries_exhausted;
}

// Why a runner process (isolation = "process") was replaced (label
// `reason` of kanban_runner_restarts_total).
enum class RunnerRestart { crash, timeout, memory, recycle };
inline constexpr std::array<std::string_view, 4> kRunnerRestarts{"crash", "timeout", "memory", "recycle"};

// Label values of the scheduler's and the publishers' series, all known up
// front: every series is exported at 0 before its first event, so that
// rate() and absent() in alert rules see it (Prometheus' instrumentation
// guidance: "avoid missing metrics").
inline constexpr std::array<std::string_view, 6> kSkipReasons{"backpressure", "canary",  "paused",
                                                              "draining",     "missed",  "publish_error"};
inline constexpr std::array<std::string_view, 3> kCanaryOutcomes{"ok", "failed", "timeout"};
inline constexpr std::array<std::string_view, 3> kPublishErrorReasons{"replay", "schedule", "follow_up"};
inline constexpr std::array<std::string_view, 2> kBackends{"nats", "rabbitmq"};

// The handles of one domain, created once (pointers stay valid for the
// registry's life).
struct DomainMetrics {
    std::array<prometheus::Counter*, 3> pulled{};       // by priority
    std::array<prometheus::Counter*, 4> processed{};    // by Outcome
    std::array<prometheus::Counter*, kDeadLetterReasons.size()> dead_lettered{};  // by DeadLetterReason
    prometheus::Counter* dead_letter_failures = nullptr;  // dead letters the DLQ did not take (full, down)
    prometheus::Gauge* dead_letters_pending = nullptr;    // items settled as dead letters, not yet stored
    prometheus::Counter* acked_swept = nullptr;           // acknowledged items a server crash left stored
    std::array<prometheus::Counter*, kRunnerRestarts.size()> runner_restarts{};  // by RunnerRestart
    prometheus::Gauge* runner_processes = nullptr;        // live runner processes
    prometheus::Counter* acked = nullptr;
    prometheus::Counter* nacked = nullptr;      // retried with a delay, or released at shutdown
    prometheus::Counter* duplicates = nullptr;  // already done: acked without the handler
    prometheus::Counter* store_failures = nullptr;  // idempotency lookups or records that failed
    prometheus::Histogram* handler_duration = nullptr;
    prometheus::Histogram* item_wait = nullptr;  // publish → pull
    std::array<prometheus::Gauge*, 3> queue_depth{};  // by priority: waiting + unacked
    prometheus::Gauge* in_flight = nullptr;
    prometheus::Gauge* workers = nullptr;
    prometheus::Gauge* workers_target = nullptr;
    prometheus::Gauge* circuit_state = nullptr;  // 0 closed, 1 half-open, 2 open
    std::array<prometheus::Counter*, 3> circuit_transitions{};  // by the state entered
    prometheus::Gauge* stalled = nullptr;
    prometheus::Gauge* paused = nullptr;  // 1 while an operator paused the domain
    prometheus::Counter* rate_limited_seconds = nullptr;  // items in hand waiting for their rate_limit start
    prometheus::Gauge* oldest_item_age = nullptr;  // seconds
    prometheus::Gauge* dead_letter_depth = nullptr;
    // The RabbitMQ fallback's queues (ready messages; no priorities there).
    prometheus::Gauge* queue_depth_rabbitmq = nullptr;
    prometheus::Gauge* dead_letter_depth_rabbitmq = nullptr;

    void processedInc(Outcome o) { processed[static_cast<std::size_t>(o)]->Increment(); }
    void runnerRestartInc(RunnerRestart r) { runner_restarts[static_cast<std::size_t>(r)]->Increment(); }
    void deadLetteredInc(DeadLetterReason r) { dead_lettered[static_cast<std::size_t>(r)]->Increment(); }
    double processedValue(Outcome o) const { return processed[static_cast<std::size_t>(o)]->Value(); }
};

class Metrics {
public:
    explicit Metrics(std::string_view version);

    // Created on first use (every series of the domain, at 0); thread-safe.
    DomainMetrics& domain(const std::string& name);
    // The series of a scheduled job (published, skipped by reason, canaries
    // by outcome), at 0; thread-safe.
    void job(const std::string& name);
    void setPluginInfo(const std::string& domain, const std::string& plugin, const std::string& version);
    // The backend publishes go to now: 1 for it, 0 for the other.
    void setActiveBackend(std::string_view backend);
    void failoverInc() { failovers_->Increment(); }
    // The configuration loaded at start (not a reload).
    void configLoaded(double unix_s) { last_reload_time_->Set(unix_s); }
    // Configuration reloads (SIGHUP).
    void reloaded(bool ok, double unix_s) {
        reloads_family_->Add({{"result", ok ? "success" : "failure"}}).Increment();
        last_reload_ok_->Set(ok ? 1 : 0);
        if (ok) last_reload_time_->Set(unix_s);
    }
    // The scheduler (labels: job names from the config and the API).
    void scheduledPublishedInc(const std::string& job) { scheduled_family_->Add({{"job", job}}).Increment(); }
    void scheduledSkippedInc(const std::string& job, const std::string& reason, double n) {
        skipped_family_->Add({{"job", job}, {"reason", reason}}).Increment(n);
    }
    void canaryInc(const std::string& job, const std::string& outcome) {
        canaries_family_->Add({{"job", job}, {"outcome", outcome}}).Increment();
    }
    void setOrphanedItems(double n) { orphaned_->Set(n); }
    // [tracing]: spans exported and dropped (any thread).
    void spansExported(double n) { spans_exported_->Increment(n); }
    void spansDropped(double n) { spans_dropped_->Increment(n); }
    void publishedInc(const std::string& domain) { published_family_->Add({{"domain", domain}}).Increment(); }
    void publishErrorInc(std::string_view backend, std::string_view reason);

    // The text exposition format (what GET /metrics serves).
    std::string scrape() const;
    prometheus::Registry& registry() { return *registry_; }

private:
    std::shared_ptr<prometheus::Registry> registry_;
    std::mutex mu_;
    std::map<std::string, DomainMetrics> domains_;
    prometheus::Family<prometheus::Counter>* pulled_family_;
    prometheus::Family<prometheus::Counter>* processed_family_;
    prometheus::Family<prometheus::Counter>* dead_lettered_family_;
    prometheus::Family<prometheus::Counter>* dead_letter_failures_family_;
    prometheus::Family<prometheus::Gauge>* dead_letters_pending_family_;
    prometheus::Family<prometheus::Counter>* acked_swept_family_;
    prometheus::Family<prometheus::Counter>* runner_restarts_family_;
    prometheus::Family<prometheus::Gauge>* runner_processes_family_;
    prometheus::Family<prometheus::Counter>* acked_family_;
    prometheus::Family<prometheus::Counter>* nacked_family_;
    prometheus::Family<prometheus::Counter>* duplicates_family_;
    prometheus::Family<prometheus::Counter>* store_failures_family_;
    prometheus::Family<prometheus::Counter>* published_family_;
    prometheus::Family<prometheus::Counter>* publish_errors_family_;
    prometheus::Family<prometheus::Histogram>* handler_duration_family_;
    prometheus::Family<prometheus::Histogram>* item_wait_family_;
    prometheus::Family<prometheus::Gauge>* queue_depth_family_;
    prometheus::Family<prometheus::Gauge>* in_flight_family_;
    prometheus::Family<prometheus::Gauge>* workers_family_;
    prometheus::Family<prometheus::Gauge>* workers_target_family_;
    prometheus::Family<prometheus::Gauge>* circuit_state_family_;
    prometheus::Family<prometheus::Counter>* circuit_transitions_family_;
    prometheus::Family<prometheus::Gauge>* stalled_family_;
    prometheus::Family<prometheus::Gauge>* paused_family_;
    prometheus::Family<prometheus::Counter>* rate_limited_family_;
    prometheus::Family<prometheus::Gauge>* oldest_age_family_;
    prometheus::Family<prometheus::Gauge>* dead_letter_depth_family_;
    prometheus::Family<prometheus::Gauge>* plugin_info_family_;
    prometheus::Family<prometheus::Gauge>* backend_active_family_;
    std::map<std::string, prometheus::Gauge*> plugin_info_;  // by domain
    prometheus::Gauge* orphaned_;
    prometheus::Counter* spans_exported_;
    prometheus::Counter* spans_dropped_;
    prometheus::Counter* failovers_;
    prometheus::Family<prometheus::Counter>* reloads_family_;
    prometheus::Gauge* last_reload_ok_;
    prometheus::Gauge* last_reload_time_;
    prometheus::Family<prometheus::Counter>* scheduled_family_;
    prometheus::Family<prometheus::Counter>* skipped_family_;
    prometheus::Family<prometheus::Counter>* canaries_family_;
};

}  // namespace kanban::host::metrics
