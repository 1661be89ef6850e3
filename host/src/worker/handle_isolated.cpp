// DomainWorkers, isolation = "process": a pulled batch goes to the worker's
// runner process in one message and comes back as results in shared
// memory. kanband keeps everything else (idempotency, attempts, deadlines,
// leases, ack, retry, DLQ, breaker). A runner that dies costs the item in
// its handler one attempt and nothing else; one still in a handler past
// its deadline and a grace is killed and its item counted as a timeout.
#include "worker/domain_workers.hpp"

#include "common/clock.hpp"
#include "worker/backoff.hpp"

#include <spdlog/spdlog.h>

namespace kanban::host::worker {
namespace {

// How long a handler may run past its deadline (it was asked to stop by
// then) before its runner is killed.
constexpr std::chrono::milliseconds kKillGrace{2000};
// How often the worker looks at its runner while a batch runs.
constexpr std::chrono::milliseconds kLookEvery{100};
// A runner that does not load and create its plugin within this is killed.
constexpr std::chrono::milliseconds kReadyWithin{10000};
// Restarts after crashes back off from 100 ms up to this.
constexpr std::int64_t kRestartBackoffMaxMs = 10000;
// An asked runner's destroy() gets this long before it is killed.
constexpr std::chrono::milliseconds kRetireGrace{2000};

std::int64_t steadyNs() { return std::chrono::steady_clock::now().time_since_epoch().count(); }

}  // namespace

std::chrono::milliseconds DomainWorkers::runnerBackoff(const Slot& slot) const {
    if (slot.runner || !handler()->isolated()) return std::chrono::milliseconds(0);
    const std::int64_t wait_ns = next_spawn_ns_.load() - steadyNs();
    return std::chrono::ceil<std::chrono::milliseconds>(std::chrono::nanoseconds(std::max<std::int64_t>(0, wait_ns)));
}

std::optional<RunnerCrash> DomainWorkers::lastCrash() const {
    std::lock_guard lock(crash_mu_);
    return last_crash_;
}

bool DomainWorkers::ensureRunner(Slot& slot, const std::shared_ptr<const plugin::Handler>& gen) {
    if (slot.runner && slot.runner_of != gen) {
        // A reload: the old generation's runner has finished its batch.
        spdlog::info("domain={}: runner pid={} retired for the new plugin generation", name(), slot.runner->pid());
        dropRunner(slot, std::nullopt);
    }
    if (slot.runner) return true;
    auto started = runner::RunnerProcess::spawn(*gen->runner, kReadyWithin);
    if (!started) {
        spdlog::error("domain={}: cannot start a runner: {}", name(), started.message());
        return false;
    }
    slot.runner = std::move(*started);
    slot.runner_of = gen;
    metrics_.runner_processes->Increment();
    spdlog::info("domain={}: runner pid={} started (worker {}, plugin {} {})", name(), slot.runner->pid(), slot.index,
                 gen->name, gen->version);
    return true;
}

void DomainWorkers::dropRunner(Slot& slot, std::optional<metrics::RunnerRestart> why) {
    if (!slot.runner) return;
    if (!why || *why == metrics::RunnerRestart::memory || *why == metrics::RunnerRestart::recycle)
        slot.runner->retire(kRetireGrace);  // finished its batch: destroy() runs
    else
        slot.runner->kill();  // no-op when it already ended
    slot.runner.reset();
    slot.runner_of.reset();
    metrics_.runner_processes->Decrement();
    if (why) metrics_.runnerRestartInc(*why);
}

void DomainWorkers::handleIsolated(broker::DeliveryBatch& batch, const std::vector<bool>& done,
                                   const std::vector<std::optional<broker::AttemptRecord>>& records,
                                   broker::DoneStore& store, Slot& slot, bool trial, const WorkerSettings& s,
                                   const std::shared_ptr<const plugin::Handler>& gen) {
    const std::string& domain = name();
    if (!ensureRunner(slot, gen)) {
        if (stop_.load()) {
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (done[i])
                    ack(*batch[i]);
                else
                    batch[i]->release();
            }
            return;
        }
        breakerResult(false);  // a plugin that cannot start stops its line like a failing one
        handBack(batch, done, s, "no runner process", batch.size());
        return;
    }
    runner::RunnerProcess& rp = *slot.runner;
    runner::Shared& sh = rp.shared();

    // What must not run is settled here; the rest goes in one message.
    std::vector<std::size_t> index;  // batch index of each item sent
    std::vector<runner::WireItem> wire;
    std::vector<AttemptExtras> extras;  // per item sent
    // The breaker opened (another worker's failures) since this batch was
    // pulled: the items wait out the open period unstarted.
    const bool held = !trial && breaker_.state() == CircuitBreaker::State::open;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        broker::Delivery& d = *batch[i];
        if (stop_.load()) {
            d.release();
            metrics_.nacked->Increment();
            continue;
        }
        if (done[i]) {
            ackDuplicate(d);
            continue;
        }
        if (held) {
            d.retryAfter(std::chrono::milliseconds(s.breaker.open_ms));
            metrics_.nacked->Increment();
            continue;
        }
        const auto deadline = admit(d, s, store, records[i]);
        if (!deadline) continue;
        index.push_back(i);
        runner::WireItem w{d.id, d.payload, static_cast<std::uint32_t>(d.priority), d.attempt, *deadline, {}};
        d.headers(w.headers);  // the runner has no broker message to read them from
        AttemptExtras& x = extras.emplace_back();
        x.plugin_version = gen->version;
        x.span = beginSpan(d);
        if (x.span) setHeader(w.headers, kTraceParentHeader, x.span->traceparent);
        wire.push_back(std::move(w));
    }
    if (wire.empty()) return;
    rp.begin({s.domain.timeout_ms, s.domain.runner.memory_max_mb * 1024, s.domain.runner.recycle_after_items}, wire);

    const auto ack_wait = broker::ackWaitFor(s.domain.timeout_ms);
    const auto refresh_every = (ack_wait - std::chrono::milliseconds(s.domain.timeout_ms)) / 2;
    auto last_refresh = std::chrono::steady_clock::now();
    auto last_ack = last_refresh;
    std::uint32_t progress_seen = 0;
    std::uint32_t shown = 0;  // the `current` last published to the slot
    std::size_t settled = 0;  // wire[0, settled) are settled
    bool breaker_stopped = false;
    std::vector<bool> skipped(wire.size(), false);
    std::vector<broker::Delivery*> awaiting_ack;

    // Settles the items whose results are final.
    const auto settleUpTo = [&](std::size_t upto) {
        for (; settled < upto; ++settled) {
            broker::Delivery& d = *batch[index[settled]];
            runner::ItemResult& r = sh.results[settled];
            const auto state = static_cast<runner::ItemState>(r.state.load(std::memory_order_acquire));
            const bool had_record = records[index[settled]].has_value();
            if (state == runner::ItemState::skipped || state == runner::ItemState::pending) {
                done_.end(d.id, false);
                skipped[settled] = true;
                continue;
            }
            if (state == runner::ItemState::expired) {
                done_.end(d.id, false);
                deadLetter(d, metrics::DeadLetterReason::deadline_exceeded, "deadline_exceeded", store, had_record);
                continue;
            }
            r.reason[runner::kReasonBytes - 1] = '\0';
            HandlerReturn ret{.status = r.status,
                                    .reason = r.reason,
                                    .overran = r.ended_ns > r.deadline_ns,
                                    .cancelled_by_stop = sh.cancel.load() != 0 && cancel_running_.load(),
                                    .attempt = d.attempt,
                                    .max_attempts = s.retry.max_attempts,
                                    .retry_after_ms = r.retry_after_ms};
            crashes_in_row_ = 0;
            AttemptExtras& x = extras[settled];
            if (x.span) x.span->start_unix_ns = nowUnixNs() - (steadyNs() - r.started_ns);
            if (r.status == KANBAN_STATUS_OK && r.follow_ups > 0) {
                x.follow_ups = rp.takeFollowUps(settled);
                if (x.follow_ups.size() != r.follow_ups) {
                    spdlog::error("domain={} id={}: the runner reported {} follow-ups and sent {}; the item is retried",
                                  domain, d.id, r.follow_ups, x.follow_ups.size());
                    ret.status = KANBAN_STATUS_RETRY;
                    ret.reason = "follow-ups lost between the runner and kanband";
                }
            }
            applyOutcome(conclude(d, s, store, had_record, ret, std::chrono::nanoseconds(r.ended_ns - r.started_ns), &x),
                         d, store, awaiting_ack);
        }
    };

    std::optional<metrics::RunnerRestart> ended;  // the runner died (crash) or was killed (timeout)
    runner::ExitInfo exit;
    for (;;) {
        const auto ev = rp.pump(kLookEvery);
        settleUpTo(std::min<std::size_t>(sh.completed.load(std::memory_order_acquire), wire.size()));
        if (ev == runner::RunnerProcess::Event::done) break;
        if (ev == runner::RunnerProcess::Event::died) {
            exit = rp.reap();
            ended = metrics::RunnerRestart::crash;
            break;
        }
        const auto now = std::chrono::steady_clock::now();
        ackHandledEvery(awaiting_ack, store, now, last_ack);
        const std::uint32_t cur = sh.current.load(std::memory_order_acquire);
        const std::int64_t cur_deadline = sh.current_deadline_ns.load();
        slot.busy_since_ns = cur != 0 ? sh.current_started_ns.load() : 0;
        if (cur != shown) {  // what `kanbanctl stalled` names
            shown = cur;
            std::lock_guard b(slot.batch_mu);
            const broker::Delivery* in = cur != 0 && cur <= wire.size() ? batch[index[cur - 1]].get() : nullptr;
            slot.in_handler_id = in != nullptr ? in->id : "";
            slot.in_handler_attempt = in != nullptr ? in->attempt : 0;
        }
        if (stop_.load()) {
            sh.stop = 1;  // unstarted items come back
            if (cancel_running_.load()) sh.cancel = 1;
        }
        if (!trial && breaker_.state() == CircuitBreaker::State::open && sh.stop.exchange(1) == 0) breaker_stopped = true;
        // In its handler past the deadline (cancelled() has said so since):
        // the items behind it are not started (they go back when it returns
        // or is killed); past the grace too: killed.
        const bool overran = cur != 0 && cur == sh.current.load() && now.time_since_epoch().count() > cur_deadline;
        if (overran) sh.stop = 1;
        if (overran && now.time_since_epoch().count() > cur_deadline + std::chrono::nanoseconds(kKillGrace).count()) {
            exit = rp.kill();
            ended = metrics::RunnerRestart::timeout;
            break;
        }
        // Leases: the handler asked (progress()), or half the margin passed.
        if (const std::uint32_t p = sh.progress.load(); p != progress_seen && cur != 0) {
            progress_seen = p;
            batch[index[cur - 1]]->progress();
        }
        if (now - last_refresh >= refresh_every) {
            for (std::size_t k = settled; k < wire.size(); ++k) batch[index[k]]->progress();
            for (broker::Delivery* a : awaiting_ack) a->progress();
            last_refresh = now;
        }
    }
    slot.busy_since_ns = 0;
    {
        std::lock_guard b(slot.batch_mu);
        slot.in_handler_id.clear();
    }

    if (ended) {
        // The runner is gone: what it finished is final, the item in its
        // handler is charged, the rest never started.
        const std::uint32_t cur = sh.current.load();
        for (std::size_t k = settled; k < wire.size(); ++k)
            if (sh.results[k].state.load() != static_cast<std::uint32_t>(runner::ItemState::pending)) settleUpTo(k + 1);
        std::string id;
        for (std::size_t k = settled; k < wire.size(); ++k, ++settled) {
            broker::Delivery& d = *batch[index[k]];
            if (cur == k + 1) {
                id = d.id;
                const bool had_record = records[index[k]].has_value();
                if (*ended == metrics::RunnerRestart::timeout) {
                    conclude(d, s, store, had_record,
                             {.status = KANBAN_STATUS_RETRY,
                              .reason = "timeout",
                              .overran = true,
                              .attempt = d.attempt,
                              .max_attempts = s.retry.max_attempts},
                             std::chrono::nanoseconds(steadyNs() - sh.results[k].started_ns), &extras[k]);
                    breakerResult(false);
                } else {
                    concludeCrash(d, s, store, had_record, exit.describe(), &extras[k]);
                }
                continue;
            }
            done_.end(d.id, false);
            skipped[k] = true;
        }
        const std::string what = *ended == metrics::RunnerRestart::timeout
                                     ? "killed: in its handler past timeout_ms + " + std::to_string(kKillGrace.count()) + " ms"
                                     : exit.describe();
        spdlog::error("runner crashed domain={} pid={} id={} {}: {}; a new runner takes over", domain, rp.pid(),
                      id.empty() ? "(none)" : id, *ended == metrics::RunnerRestart::timeout ? "timeout" : "crash", what);
        {
            std::lock_guard lock(crash_mu_);
            last_crash_ = RunnerCrash{id, what, nowUnixMs()};
        }
        const std::uint32_t n = ++crashes_in_row_;
        next_spawn_ns_ = steadyNs() + std::chrono::nanoseconds(backoffDelay(n, 100, kRestartBackoffMaxMs, kBackoffJitter, unitRandom())).count();
        dropRunner(slot, ended);
    }

    // Not started: back for prompt redelivery (no attempt), or to wait out
    // the open breaker.
    std::size_t handed = 0;
    for (std::size_t k = 0; k < wire.size(); ++k) {
        if (!skipped[k]) continue;
        broker::Delivery& d = *batch[index[k]];
        if (breaker_stopped)
            d.retryAfter(std::chrono::milliseconds(s.breaker.open_ms));
        else
            d.release();
        metrics_.nacked->Increment();
        ++handed;
    }
    if (handed > 0 && breaker_stopped)
        spdlog::info("domain={}: circuit open, {} items handed back unstarted", domain, handed);
    ackHandled(awaiting_ack, store);

    if (!ended && slot.runner) {
        const auto retire = static_cast<runner::Retire>(sh.retire.load());
        if (retire != runner::Retire::no) {
            const bool memory = retire == runner::Retire::memory;
            spdlog::info("domain={}: runner pid={} retired after {} ({}); a new one takes over", domain, rp.pid(),
                         memory ? "its RSS passed memory_max_mb" : "recycle_after_items",
                         memory ? std::to_string(sh.rss_kib.load() / 1024) + " MiB" : std::to_string(s.domain.runner.recycle_after_items) + " items");
            dropRunner(slot, memory ? metrics::RunnerRestart::memory : metrics::RunnerRestart::recycle);
        }
    }
}

}  // namespace kanban::host::worker
