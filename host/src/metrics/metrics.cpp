#include "metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

namespace kanban::host::metrics {
namespace {

using prometheus::Histogram;

// Handler time: from a millisecond no-op to the longest sensible timeout.
const Histogram::BucketBoundaries kHandlerBuckets{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                  1,     2.5,   5,    10,    30,   60,  300};
// Publish → pull: from an idle queue (milliseconds) to an hour-long backlog.
const Histogram::BucketBoundaries kWaitBuckets{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};

template <typename Builder>
auto& family(Builder builder, prometheus::Registry& r, const char* name, const char* help) {
    return builder.Name(name).Help(help).Register(r);
}

}  // namespace

Metrics::Metrics(std::string_view version) : registry_(std::make_shared<prometheus::Registry>()) {
    auto& r = *registry_;
    pulled_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_pulled_total", "Items fetched from the broker.");
    processed_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_processed_total",
                                "Handler calls by outcome (ok, retry, fail, timeout).");
    dead_lettered_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_dead_lettered_total",
                                    "Items moved to the dead-letter queue, by reason.");
    dead_letter_failures_family_ =
        &family(prometheus::BuildCounter(), r, "kanban_dead_letter_failures_total",
                "Dead letters the dead-letter queue did not take (full, unreachable); each is retried without "
                "running its handler again.");
    dead_letters_pending_family_ =
        &family(prometheus::BuildGauge(), r, "kanban_dead_letters_pending",
                "Items this host settled as dead letters that the dead-letter queue has not taken yet.");
    acked_swept_family_ =
        &family(prometheus::BuildCounter(), r, "kanban_acked_items_swept_total",
                "Acknowledged items a crashed nats-server had left in the work stream, removed by the coordinator.");
    runner_restarts_family_ = &family(prometheus::BuildCounter(), r, "kanban_runner_restarts_total",
                                      "Runner processes (isolation = \"process\") replaced, by reason: crash, timeout "
                                      "(killed past timeout_ms and the grace), memory (memory_max_mb), recycle "
                                      "(recycle_after_items).");
    runner_processes_family_ = &family(prometheus::BuildGauge(), r, "kanban_runner_processes",
                                       "Runner processes (isolation = \"process\") alive.");
    acked_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_acked_total", "Items acknowledged (done).");
    nacked_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_nacked_total",
                             "Items handed back for redelivery (retry with backoff, or not started at shutdown).");
    duplicates_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_duplicate_total",
                                 "Items already done (idempotency record): acked without calling the handler.");
    store_failures_family_ = &family(prometheus::BuildCounter(), r, "kanban_idempotency_store_failures_total",
                                     "Idempotency lookups or records the shared store could not confirm.");
    published_family_ = &family(prometheus::BuildCounter(), r, "kanban_items_published_total",
                                "Work items published by this host (replays, schedules).");
    publish_errors_family_ = &family(prometheus::BuildCounter(), r, "kanban_publish_errors_total",
                                     "Publishes by this host that failed, by backend and reason.");
    handler_duration_family_ = &family(prometheus::BuildHistogram(), r, "kanban_handler_duration_seconds",
                                       "Time spent in the plugin's handle().");
    item_wait_family_ = &family(prometheus::BuildHistogram(), r, "kanban_item_wait_seconds",
                                "Time from publish to pull (stored in the broker to fetched by a worker).");
    queue_depth_family_ = &family(prometheus::BuildGauge(), r, "kanban_queue_depth",
                                  "Items waiting or unacknowledged in the broker, sampled every health interval.");
    in_flight_family_ = &family(prometheus::BuildGauge(), r, "kanban_items_in_flight", "Items held by this host's workers.");
    workers_family_ = &family(prometheus::BuildGauge(), r, "kanban_workers", "Worker threads running.");
    workers_target_family_ = &family(prometheus::BuildGauge(), r, "kanban_workers_target", "Worker threads wanted.");
    circuit_state_family_ = &family(prometheus::BuildGauge(), r, "kanban_circuit_state",
                                    "Circuit breaker: 0 closed, 1 half-open, 2 open.");
    circuit_transitions_family_ = &family(prometheus::BuildCounter(), r, "kanban_circuit_transitions_total",
                                          "Circuit breaker changes, by the state entered.");
    stalled_family_ = &family(prometheus::BuildGauge(), r, "kanban_stalled_items",
                              "Items in a handler for longer than coordinator.stall_threshold_ms.");
    paused_family_ = &family(prometheus::BuildGauge(), r, "kanban_domain_paused",
                             "1 while the domain is paused (kanbanctl domain pause): its workers pull nothing.");
    rate_limited_family_ = &family(prometheus::BuildCounter(), r, "kanban_rate_limited_seconds_total",
                                   "Time the domain's fetched items waited for their start under rate_limit (shared by "
                                   "every host); meanwhile the rest wait in the broker.");
    oldest_age_family_ = &family(prometheus::BuildGauge(), r, "kanban_oldest_item_age_seconds",
                                 "Age of the oldest item still in the broker (waiting or in a handler).");
    dead_letter_depth_family_ = &family(prometheus::BuildGauge(), r, "kanban_dead_letter_queue_depth",
                                        "Items in the dead-letter queue.");
    plugin_info_family_ = &family(prometheus::BuildGauge(), r, "kanban_plugin_info", "The plugin serving each domain (always 1).");
    backend_active_family_ = &family(prometheus::BuildGauge(), r, "kanban_backend_active",
                                     "1 for the broker publishes go to now (NATS, or RabbitMQ while NATS is down).");
    failovers_ = &family(prometheus::BuildCounter(), r, "kanban_failovers_total",
                         "Switches of the publishing backend between NATS and RabbitMQ (both ways).")
                      .Add({});
    setActiveBackend("none");  // both series exist from the start, at 0, until the coordinator's first tick
    scheduled_family_ = &family(prometheus::BuildCounter(), r, "kanban_scheduled_items_published_total",
                                "Scheduled ticks this host stored in the broker (copies another host stored first are not counted).");
    skipped_family_ = &family(prometheus::BuildCounter(), r, "kanban_scheduled_ticks_skipped_total",
                              "Scheduled ticks not published, by reason (backpressure, canary, paused, draining, missed, "
                              "publish_error).");
    canaries_family_ = &family(prometheus::BuildCounter(), r, "kanban_schedule_canaries_total",
                               "Canary outcomes of new jobs (ok, failed, timeout).");
    for (auto backend : kBackends)
        for (auto reason : kPublishErrorReasons)
            publish_errors_family_->Add({{"backend", std::string(backend)}, {"reason", std::string(reason)}});
    reloads_family_ = &family(prometheus::BuildCounter(), r, "kanban_config_reloads_total",
                              "Configuration reloads (SIGHUP), by result.");
    for (const char* result : {"success", "failure"}) reloads_family_->Add({{"result", result}});
    last_reload_ok_ = &family(prometheus::BuildGauge(), r, "kanban_config_last_reload_successful",
                              "1 if the last reload was applied (or none was tried), 0 if it was refused.")
                           .Add({});
    last_reload_ok_->Set(1);
    last_reload_time_ = &family(prometheus::BuildGauge(), r, "kanban_config_last_reload_success_timestamp_seconds",
                                "When the configuration was last loaded successfully (start or reload).")
                             .Add({});
    spans_exported_ = &family(prometheus::BuildCounter(), r, "kanban_spans_exported_total",
                              "Handler-attempt spans accepted by the OTLP endpoint ([tracing]).")
                           .Add({});
    spans_dropped_ = &family(prometheus::BuildCounter(), r, "kanban_spans_dropped_total",
                             "Spans dropped: the export queue was full or the OTLP endpoint did not accept them.")
                          .Add({});
    orphaned_ = &family(prometheus::BuildGauge(), r, "kanban_orphaned_items",
                        "Items stored on a subject that no configured domain consumes.")
                     .Add({});
    family(prometheus::BuildGauge(), r, "kanban_build_info", "The running version (always 1).")
        .Add({{"version", std::string(version)}})
        .Set(1);
}

DomainMetrics& Metrics::domain(const std::string& name) {
    std::lock_guard lock(mu_);
    auto [it, inserted] = domains_.try_emplace(name);
    DomainMetrics& m = it->second;
    if (!inserted) return m;
    const prometheus::Labels d{{"domain", name}};
    for (Priority p : kPriorities) {
        prometheus::Labels l = d;
        l.emplace("priority", std::string(priorityName(p)));
        m.pulled[static_cast<std::size_t>(p)] = &pulled_family_->Add(l);
        l.emplace("backend", "nats");
        m.queue_depth[static_cast<std::size_t>(p)] = &queue_depth_family_->Add(l);
    }
    for (std::size_t i = 0; i < kOutcomes.size(); ++i) {
        prometheus::Labels l = d;
        l.emplace("outcome", std::string(kOutcomes[i]));
        m.processed[i] = &processed_family_->Add(l);
    }
    for (std::size_t i = 0; i < kDeadLetterReasons.size(); ++i) {
        prometheus::Labels l = d;
        l.emplace("reason", std::string(kDeadLetterReasons[i]));
        m.dead_lettered[i] = &dead_lettered_family_->Add(l);
    }
    m.dead_letter_failures = &dead_letter_failures_family_->Add(d);
    m.dead_letters_pending = &dead_letters_pending_family_->Add(d);
    m.acked_swept = &acked_swept_family_->Add(d);
    for (std::size_t i = 0; i < kRunnerRestarts.size(); ++i) {
        prometheus::Labels l = d;
        l.emplace("reason", std::string(kRunnerRestarts[i]));
        m.runner_restarts[i] = &runner_restarts_family_->Add(l);
    }
    m.runner_processes = &runner_processes_family_->Add(d);
    published_family_->Add(d);
    m.acked = &acked_family_->Add(d);
    m.nacked = &nacked_family_->Add(d);
    m.duplicates = &duplicates_family_->Add(d);
    m.store_failures = &store_failures_family_->Add(d);
    m.handler_duration = &handler_duration_family_->Add(d, kHandlerBuckets);
    m.item_wait = &item_wait_family_->Add(d, kWaitBuckets);
    m.in_flight = &in_flight_family_->Add(d);
    m.workers = &workers_family_->Add(d);
    m.workers_target = &workers_target_family_->Add(d);
    m.circuit_state = &circuit_state_family_->Add(d);
    for (std::size_t i = 0; i < m.circuit_transitions.size(); ++i) {
        static constexpr const char* kStates[] = {"closed", "half_open", "open"};
        prometheus::Labels l = d;
        l.emplace("state", kStates[i]);
        m.circuit_transitions[i] = &circuit_transitions_family_->Add(l);
    }
    m.stalled = &stalled_family_->Add(d);
    m.paused = &paused_family_->Add(d);
    m.rate_limited_seconds = &rate_limited_family_->Add(d);
    m.oldest_item_age = &oldest_age_family_->Add(d);
    m.dead_letter_depth = &dead_letter_depth_family_->Add({{"domain", name}, {"backend", "nats"}});
    m.queue_depth_rabbitmq = &queue_depth_family_->Add({{"domain", name}, {"backend", "rabbitmq"}});
    m.dead_letter_depth_rabbitmq = &dead_letter_depth_family_->Add({{"domain", name}, {"backend", "rabbitmq"}});
    return m;
}

void Metrics::job(const std::string& name) {
    scheduled_family_->Add({{"job", name}});
    for (auto reason : kSkipReasons) skipped_family_->Add({{"job", name}, {"reason", std::string(reason)}});
    for (auto outcome : kCanaryOutcomes) canaries_family_->Add({{"job", name}, {"outcome", std::string(outcome)}});
}

void Metrics::setPluginInfo(const std::string& domain, const std::string& plugin, const std::string& version) {
    std::lock_guard lock(mu_);
    if (auto it = plugin_info_.find(domain); it != plugin_info_.end()) plugin_info_family_->Remove(it->second);
    auto& g = plugin_info_family_->Add({{"domain", domain}, {"plugin", plugin}, {"version", version}});
    g.Set(1);
    plugin_info_[domain] = &g;
}

void Metrics::setActiveBackend(std::string_view backend) {
    for (const char* b : {"nats", "rabbitmq"}) backend_active_family_->Add({{"backend", b}}).Set(backend == b ? 1 : 0);
}

void Metrics::publishErrorInc(std::string_view backend, std::string_view reason) {
    publish_errors_family_->Add({{"backend", std::string(backend)}, {"reason", std::string(reason)}}).Increment();
}

std::string Metrics::scrape() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace kanban::host::metrics
