// The worker threads of one domain: pull a batch (never more than
// pull_batch items in hand), run each item through the domain's plugin,
// settle it with the broker, pull again. Pulling only when there is
// capacity is the backpressure: the host cannot be overloaded. A circuit
// breaker stops the domain's pulling after repeated failures (jidoka), and
// the pool grows or shrinks to the coordinator's target between batches.
#pragma once

#include "broker/work_queue.hpp"
#include "config/config.hpp"
#include "flow/in_flight_leases.hpp"
#include "flow/rate_gate.hpp"
#include "metrics/metrics.hpp"
#include "plugin/handler.hpp"
#include "plugin/host_api.hpp"
#include "runner/runner_process.hpp"
#include "tracing/tracer.hpp"
#include "worker/attempt_ledger.hpp"
#include "worker/circuit_breaker.hpp"
#include "worker/inflight_journal.hpp"
#include "worker/local_done_record.hpp"
#include "worker/outcome_policy.hpp"
#include "worker/pool_control.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

namespace kanban::host::worker {

struct WorkerSettings {
    config::DomainConfig domain;
    config::WorkersConfig workers;
    config::RetryConfig retry;
    config::CircuitBreakerConfig breaker;
    // The longest an idle worker's fetch waits before its loop turns (stop,
    // a smaller pool and a reload interrupt the wait; work ends it at once).
    std::chrono::milliseconds idle_wait{5000};
    // Told when a scheduled item (id "sched:...") was acked done (true) or
    // dead-lettered (false): the scheduler's canaries. Any thread.
    std::function<void(const std::string& id, bool ok)> on_scheduled_settled;
    // The slots of domain.max_in_flight, shared by every host (null: no cap
    // can be kept, the domain is not capped).
    std::shared_ptr<flow::InFlightLeases> leases;
    // The state of domain.rate_limit, shared by every host (null: each host
    // keeps the limit / workers.hosts on its own).
    std::shared_ptr<flow::RateStore> rates;
    // Publishes a handler's follow-ups (the host's brokers, NATS first);
    // null: follow-ups cannot be published and an attempt that asks for
    // them is retried.
    std::function<Result<broker::PublishAck>(const broker::PublishRequest&)> publish;
    // Whether a follow-up's domain is configured (null: any).
    std::function<bool(std::string_view)> known_domain;
    // [tracing]: a span per handler attempt (null: off).
    std::shared_ptr<tracing::Tracer> tracer;
};

// What an attempt leaves besides its status.
struct AttemptExtras {
    std::vector<plugin::FollowUp> follow_ups;  // published only if it returns ok
    std::optional<tracing::ActiveSpan> span;   // its span, when traced
    std::string_view plugin_version;
};

// The last runner process of a domain that crashed or was killed (isolation = "process").
struct RunnerCrash {
    std::string id;    // the item in its handler ("" if none)
    std::string what;  // "signal 11 (SIGSEGV)", "exit status 0", "killed: past timeout_ms"
    std::int64_t at_unix_ms = 0;
};

class DomainWorkers final : public PoolControl {
public:
    // `done` (the process-wide local idempotency record), `ledger` (its
    // attempt records) and `metrics` must outlive this. `journal` (may be
    // null) marks the items in handlers for the next process.
    DomainWorkers(WorkerSettings settings, std::shared_ptr<const plugin::Handler> handler, broker::WorkQueue& queue,
                  LocalDoneRecord& done, AttemptLedger& ledger, metrics::DomainMetrics& metrics,
                  std::unique_ptr<InflightJournal> journal = nullptr);
    ~DomainWorkers() override;  // stops and joins
    DomainWorkers(const DomainWorkers&) = delete;
    DomainWorkers& operator=(const DomainWorkers&) = delete;

    // Runs `count` workers (at most workers.max): starts missing ones at
    // once; surplus ones retire at their next pull, never with an item in hand.
    void setTarget(std::size_t count) override;
    void start(std::size_t count) { setTarget(count); }
    // Asks every worker to stop: no new fetch; items in hand that were not
    // started are released for prompt redelivery. The items in a handler
    // finish; with `cancel_running` (shutdown) their handlers are also
    // asked to stop (kanban_host_api.cancelled() turns true), and an item
    // that then returns anything but ok is released, not failed.
    void requestStop(bool cancel_running = false);
    // An operator's pause (kanbanctl domain pause): no worker pulls until it
    // is lifted; items in hand finish, idle waits end at once. Any thread;
    // may be called before start().
    void setPaused(bool paused);
    bool paused() const { return paused_.load(); }
    // Workers not parked by a pause (in a fetch, a batch or between them):
    // 0 while paused means the pause is in effect here.
    std::size_t pulling() const {
        const std::size_t running = running_.load(), parked = parked_.load();
        return running > parked ? running - parked : 0;
    }
    void join();
    // join() that gives up at `deadline`: a worker still in a handler then
    // is abandoned (its item and the unstarted rest of its batch go back to
    // the broker, the journal marks the call abandoned, the thread is left
    // to the process: it never touches anything again). False if any was;
    // then this object must never be destroyed (the caller keeps it).
    bool joinUntil(std::chrono::steady_clock::time_point deadline);
    // From a watchdog, a few times a second: the unstarted items of a batch
    // whose handler is past its deadline go back to the broker at once, so
    // they neither wait behind it nor expire (which is no attempt, but late).
    void watch(std::chrono::steady_clock::time_point now);
    // Items this host settled as dead letters that the DLQ has not taken.
    std::size_t deadLettersPending() const override;

    const metrics::DomainMetrics& metrics() const { return metrics_; }
    std::size_t workers() const { return running_.load(); }  // any thread
    std::size_t target() const override { return target_.load(); }
    std::size_t capacity() const override;
    std::size_t stalled(std::chrono::milliseconds threshold) const override;
    std::vector<StalledItem> stalledItems(std::chrono::milliseconds threshold) const override;
    CircuitBreaker::State circuit() const { return breaker_.state(); }
    const std::string& name() const { return settings_.domain.name; }
    // isolation = "process": the runner processes alive, the last crash,
    // and how many runners in a row crashed or were killed (0 after a
    // handler returned).
    bool isolated() const { return handler()->isolated(); }
    std::size_t runners() const { return static_cast<std::size_t>(metrics_.runner_processes->Value()); }
    std::optional<RunnerCrash> lastCrash() const;
    std::uint32_t crashesInRow() const { return crashes_in_row_.load(); }

    // New settings (hot reload): retry, breaker, pull_batch, starvation and
    // the domain's timeout apply from each worker's next batch (consumers
    // are reopened with them); workers.max cannot grow past its value at
    // start (the slots are allocated then). Not the domain's name or plugin.
    void updateSettings(const WorkerSettings& settings);

    // A new plugin generation (hot reload): items not yet started run on
    // it; an item already in the old one's handle() finishes there, and the
    // old library is released with its last reference. In process
    // isolation each worker replaces its runner after its batch: the old
    // runner finishes what it holds, then exits.
    void swapHandler(std::shared_ptr<const plugin::Handler> handler);
    std::shared_ptr<const plugin::Handler> handler() const;

private:
    struct Slot {
        std::size_t index = 0;
        std::thread thread;
        std::atomic<bool> live{false};
        std::atomic<std::int64_t> busy_since_ns{0};  // steady clock; 0 = not in a handler
        std::mutex ctx_mu;
        kanban_context* ctx = nullptr;  // the item in the handler, if any (ctx_mu): for cancellation
        std::mutex consumer_mu;
        broker::Consumer* consumer = nullptr;  // the worker's, while it has one (consumer_mu)
        // While a handler runs: its deadline, its item and the items of the
        // batch not started yet, for the watchdog and for abandonment.
        std::atomic<std::int64_t> deadline_ns{0};  // steady clock; 0 = none
        std::mutex batch_mu;
        broker::Delivery* current = nullptr;      // batch_mu
        broker::DeliveryBatch* batch = nullptr;   // batch_mu
        std::size_t next = 0;                     // batch_mu: the first unstarted index
        bool handed_back = false;                 // batch_mu: the unstarted rest went back
        // isolation = "process": the item in the runner's handler, for
        // `kanbanctl stalled` (in-process handlers are named by `current`).
        std::string in_handler_id;                // batch_mu
        std::uint32_t in_handler_attempt = 0;     // batch_mu
        std::atomic<bool> exited{false};          // the thread left run() (or was never started)
        std::atomic<bool> abandoned{false};
        // isolation = "process": this worker's runner and the generation it
        // loaded (the worker's thread only).
        std::unique_ptr<runner::RunnerProcess> runner;
        std::shared_ptr<const plugin::Handler> runner_of;
    };
    enum class Outcome { ok, failed, settled };  // failed: counts against the breaker

    void run(std::size_t index);
    // Settles every item of the batch (or leaves it to the broker's
    // redelivery). Returns false when the idempotency store failed.
    bool handleBatch(broker::DeliveryBatch& batch, broker::DoneStore& store, Slot& slot, bool trial);
    // The attempt records of the batch's items that may have been tried
    // (this host's ledger, then the shared store): nullopt on a store error.
    std::optional<std::vector<std::optional<broker::AttemptRecord>>> attemptRecords(
        broker::DeliveryBatch& batch, const std::vector<bool>& done, broker::DoneStore& store);
    // Runs one item with the batch's settings `s`. ok: the caller records
    // and acks it; otherwise it was settled here.
    Outcome process(broker::Delivery& d, Slot& slot, const WorkerSettings& s, broker::DoneStore& store,
                    const std::optional<broker::AttemptRecord>& record, const plugin::Handler& handler);
    // Settles an item that must not reach a handler (an id over the limit,
    // settled before, past the delivery limit or its deadline, running or
    // done here) and returns nullopt; otherwise claims it and returns the
    // deadline (Unix ms) of its call.
    std::optional<std::int64_t> admit(broker::Delivery& d, const WorkerSettings& s, broker::DoneStore& store,
                                      const std::optional<broker::AttemptRecord>& record);
    // After a handler call on an admitted item: the decision, applied.
    // An ok with follow-ups publishes them first; one that cannot be
    // published makes the attempt a retry. The attempt's span ends here.
    Outcome conclude(broker::Delivery& d, const WorkerSettings& s, broker::DoneStore& store, bool had_record,
                     const HandlerReturn& r, std::chrono::nanoseconds took, AttemptExtras* extras = nullptr);
    // An admitted item whose runner died in its handler: one attempt
    // (handler_crashed after max_attempts).
    void concludeCrash(broker::Delivery& d, const WorkerSettings& s, broker::DoneStore& store, bool had_record,
                       const std::string& what, AttemptExtras* extras = nullptr);
    // Follow-ups (worker/follow_ups.cpp): publishes an ok attempt's
    // follow-ups, each with Kanban-Parent and the attempt's traceparent.
    Status publishFollowUps(const broker::Delivery& parent, const AttemptExtras& extras);
    // Tracing: the span of an attempt about to start (child of the item's
    // traceparent), and its end with the attempt's outcome.
    std::optional<tracing::ActiveSpan> beginSpan(broker::Delivery& d) const;
    void endSpan(const broker::Delivery& d, AttemptExtras& extras, std::string_view outcome, bool error,
                 std::string_view reason) const;
    // Hands back the items not known done (the store or the runner failed).
    void handBack(broker::DeliveryBatch& batch, const std::vector<bool>& done, const WorkerSettings& s,
                  const std::string& why, std::size_t count);
    // isolation = "process": the batch goes to this worker's runner.
    void handleIsolated(broker::DeliveryBatch& batch, const std::vector<bool>& done,
                        const std::vector<std::optional<broker::AttemptRecord>>& records, broker::DoneStore& store,
                        Slot& slot, bool trial, const WorkerSettings& s, const std::shared_ptr<const plugin::Handler>& gen);
    // How long this worker must wait before it may start a runner (the
    // backoff after crashes); 0 when it has one or needs none.
    std::chrono::milliseconds runnerBackoff(const Slot& slot) const;
    // The worker's runner on `gen`; false if it cannot start.
    bool ensureRunner(Slot& slot, const std::shared_ptr<const plugin::Handler>& gen);
    // Ends the worker's runner: asked to exit, or killed (`ended` says how it died).
    // Items fetched before their Kanban-Not-Before go aside until then
    // (Delivery::postpone), out of the batch: no handler call, no attempt.
    void postponeEarly(broker::DeliveryBatch& batch);
    // rate_limit: waits until the fetched batch may start (false: stopped
    // meanwhile, the items were handed back).
    bool waitForRateStart(broker::DeliveryBatch& batch, const WorkerSettings& s);
    void dropRunner(Slot& slot, std::optional<metrics::RunnerRestart> why);
    // An item's outcome for the breaker; an ok one is recorded and waits for its ack.
    void applyOutcome(Outcome outcome, broker::Delivery& d, broker::DoneStore& store,
                      std::vector<broker::Delivery*>& awaiting_ack);
    // Acks the items handled ok once their records are written.
    void ackHandled(std::vector<broker::Delivery*>& awaiting_ack, broker::DoneStore& store);
    // The same, mid-batch, while the store is not shared (NATS down), once
    // kAckEvery has passed since `last_ack`: a batch of slow items is acked
    // as it goes, so a kill -9 hands another host, which has only its own
    // record, at most the last ~10 ms of this worker's handled items, not
    // its whole batch (with a shared store the done log is written as often
    // and the other host skips them). A short batch is acked once, at its end.
    void ackHandledEvery(std::vector<broker::Delivery*>& awaiting_ack, broker::DoneStore& store,
                         std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point& last_ack);
    static constexpr std::chrono::milliseconds kAckEvery{10};
    // Writes an attempt record (this host's ledger and the shared store)
    // before the item goes back to the broker.
    void charge(broker::Delivery& d, broker::DoneStore& store, const broker::AttemptRecord& record);
    // A worker whose handler was abandoned never touches anything again.
    [[noreturn]] static void park();
    void ack(broker::Delivery& d);
    // Acks an item found done already (no handler call) and counts it.
    void ackDuplicate(broker::Delivery& d);
    void notifyScheduled(const broker::Delivery& d, bool ok);
    // Retries with backoff.
    void retry(broker::Delivery& d, const std::string& reason, const WorkerSettings& s, std::int64_t handler_delay_ms = -1);
    void deadLetter(broker::Delivery& d, metrics::DeadLetterReason why, const std::string& reason,
                    broker::DoneStore& store, bool had_record);
    // The gauge and the transition counter follow a breaker state change.
    void recordBreakerState(CircuitBreaker::State state);
    void breakerResult(bool ok);
    bool sleepUnlessStopped(std::chrono::milliseconds d);
    // While paused: waits until resumed, stopped or `d` passed.
    void waitWhilePaused(std::chrono::milliseconds d);
    // Ends the idle waits of the workers at index >= `from` (Consumer::interrupt).
    void interruptWaits(std::size_t from);

    std::shared_ptr<const WorkerSettings> live() const;  // the current settings

    const WorkerSettings settings_;  // as at start: the name, the hooks
    plugin::FollowUpRules follow_up_rules_;  // what ctx.publish() checks (settings_.known_domain)
    mutable std::mutex live_mu_;
    std::shared_ptr<const WorkerSettings> live_;  // live_mu_
    mutable std::mutex handler_mu_;
    std::shared_ptr<const plugin::Handler> handler_;  // the current generation (handler_mu_)
    broker::WorkQueue& queue_;
    LocalDoneRecord& done_;
    AttemptLedger& ledger_;
    metrics::DomainMetrics& metrics_;
    std::unique_ptr<InflightJournal> journal_;
    // Dead letters the DLQ refused, by id (retried without the handler).
    mutable std::mutex pending_mu_;
    std::unordered_set<std::string> pending_dead_letters_;  // pending_mu_
    std::atomic<std::uint32_t> dead_letter_failures_in_row_{0};  // the retry delay's backoff
    CircuitBreaker breaker_;
    flow::RateGate rate_gate_;  // rate_limit: one worker at a time fetches and waits for its start
    // Runners crashed or killed in a row, the earliest time to start the
    // next one (steady ns: a capped backoff) and the last crash.
    std::atomic<std::uint32_t> crashes_in_row_{0};
    std::atomic<std::int64_t> next_spawn_ns_{0};
    mutable std::mutex crash_mu_;
    std::optional<RunnerCrash> last_crash_;  // crash_mu_
    std::atomic<bool> stop_{false};
    std::atomic<bool> paused_{false};
    std::atomic<std::size_t> parked_{0};  // workers waiting in waitWhilePaused
    std::atomic<bool> cancel_running_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::condition_variable exited_cv_;  // a slot's thread left run() (mu_)
    std::mutex slots_mu_;                       // setTarget and join
    // A worker decides to retire and setTarget decides whether a slot
    // needs a new thread under this lock, so a target raised while a
    // worker is on its way out is never missed by both.
    std::mutex retire_mu_;
    std::vector<std::unique_ptr<Slot>> slots_;  // workers.max of them, never reallocated
    std::atomic<std::size_t> target_{0};
    std::atomic<std::size_t> running_{0};
};

}  // namespace kanban::host::worker
