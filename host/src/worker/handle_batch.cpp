// DomainWorkers, the item side: one pulled batch from the idempotency and
// attempt lookups through each handler call to its settlement.
#include "worker/domain_workers.hpp"

#include "common/clock.hpp"
#include "plugin/host_api.hpp"
#include "worker/backoff.hpp"
#include "worker/outcome_policy.hpp"

#include <spdlog/spdlog.h>

namespace kanban::host::worker {
namespace {

constexpr std::size_t kReasonCapacity = 512;
// A dead letter the DLQ refused is offered again after 1 s, doubling up to
// this: a full DLQ costs a few requests a minute, never a busy loop.
constexpr std::int64_t kDeadLetterRetryMaxMs = 60000;

std::chrono::milliseconds deadLetterRetryDelay(std::uint32_t failures_in_row) {
    return backoffDelay(failures_in_row, 1000, kDeadLetterRetryMaxMs, kBackoffJitter, unitRandom());
}

}  // namespace

bool DomainWorkers::handleBatch(broker::DeliveryBatch& batch, broker::DoneStore& store, Slot& slot, bool trial) {
    const std::string& domain = settings_.domain.name;
    const auto now_live = live();  // one snapshot for the batch

    // Which items were completed already (a lost ack, a crash after the
    // record, a duplicate published after the broker's dedup window)? The
    // local record first, then one round trip to the shared store.
    std::vector<bool> done(batch.size(), false);
    std::vector<std::string_view> ask;
    std::vector<std::size_t> ask_index;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (done_.contains(batch[i]->id)) {
            done[i] = true;
        } else {
            ask.push_back(batch[i]->id);
            ask_index.push_back(i);
        }
    }
    if (auto known = store.lookup(ask); !known) {
        metrics_.store_failures->Increment();
        handBack(batch, done, *now_live, known.message(), ask.size());
        return false;
    }
    else
        for (std::size_t j = 0; j < ask_index.size(); ++j) done[ask_index[j]] = (*known)[j];
    // How many handler calls each item had (redeliveries only).
    auto records = attemptRecords(batch, done, store);
    if (!records) {
        metrics_.store_failures->Increment();
        handBack(batch, done, *now_live, "attempt records cannot be read", ask.size());
        return false;
    }
    const auto generation = handler();  // the batch runs on one generation
    if (generation->isolated()) {
        handleIsolated(batch, done, *records, store, slot, trial, *now_live, generation);
        return true;
    }
    dropRunner(slot, std::nullopt);  // a reload moved the domain back into kanband

    // Items wait in the batch while earlier ones run. Every item in hand is
    // refreshed (InProgress) once half the ack-wait margin has passed, so
    // none expires while a handler keeps to its timeout; one that overruns
    // it has the unstarted rest handed back by the watchdog (watch()).
    const auto ack_wait = broker::ackWaitFor(now_live->domain.timeout_ms);
    const auto refresh_every = (ack_wait - std::chrono::milliseconds(now_live->domain.timeout_ms)) / 2;
    auto last_refresh = std::chrono::steady_clock::now();
    auto last_ack = last_refresh;
    std::vector<broker::Delivery*> awaiting_ack;  // handled ok, record in flight
    {
        std::lock_guard b(slot.batch_mu);
        slot.batch = &batch;
        slot.next = 0;
        slot.handed_back = false;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
        broker::Delivery& d = *batch[i];
        {
            std::lock_guard b(slot.batch_mu);
            if (slot.handed_back) break;  // the watchdog gave the rest back
            slot.next = i + 1;
        }
        if (stop_.load()) {
            d.release();  // not started: back to the broker for prompt redelivery
            metrics_.nacked->Increment();
            continue;
        }
        if (done[i]) {
            ackDuplicate(d);
            continue;
        }
        // The breaker opened (this or another worker's failures): stop the
        // line. Items not started go back to wait out the open period.
        if (!trial && breaker_.state() == CircuitBreaker::State::open) {
            const auto wait = std::chrono::milliseconds(now_live->breaker.open_ms);
            for (std::size_t j = i; j < batch.size(); ++j) {
                if (done[j]) {
                    ackDuplicate(*batch[j]);  // already done: nothing to wait for
                    continue;
                }
                batch[j]->retryAfter(wait);
                metrics_.nacked->Increment();
            }
            spdlog::info("domain={}: circuit open, {} items handed back unstarted", domain, batch.size() - i);
            std::lock_guard b(slot.batch_mu);
            slot.handed_back = true;
            break;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - last_refresh >= refresh_every) {
            for (std::size_t j = i; j < batch.size(); ++j)
                if (!done[j]) batch[j]->progress();
            for (broker::Delivery* a : awaiting_ack) a->progress();
            last_refresh = now;
        }
        ackHandledEvery(awaiting_ack, store, now, last_ack);
        applyOutcome(process(d, slot, *now_live, store, (*records)[i], *generation), d, store, awaiting_ack);
    }
    {
        std::lock_guard b(slot.batch_mu);
        slot.batch = nullptr;
    }
    ackHandled(awaiting_ack, store);
    return true;
}

void DomainWorkers::handBack(broker::DeliveryBatch& batch, const std::vector<bool>& done, const WorkerSettings& s,
                             const std::string& why, std::size_t count) {
    spdlog::warn("domain={}: {}; handing back {} items", settings_.domain.name, why, count);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (done[i]) {
            ack(*batch[i]);
            continue;
        }
        // The delay keeps this from spinning.
        batch[i]->retryAfter(backoffDelay(1, s.retry.backoff_initial_ms, s.retry.backoff_max_ms, s.retry.jitter, unitRandom()));
        metrics_.nacked->Increment();
    }
}

void DomainWorkers::applyOutcome(Outcome outcome, broker::Delivery& d, broker::DoneStore& store,
                                 std::vector<broker::Delivery*>& awaiting_ack) {
    switch (outcome) {
        case Outcome::ok:
            store.record(d.id);
            awaiting_ack.push_back(&d);
            breakerResult(true);
            break;
        case Outcome::failed: breakerResult(false); break;
        case Outcome::settled: break;
    }
}

void DomainWorkers::ackHandled(std::vector<broker::Delivery*>& awaiting_ack, broker::DoneStore& store) {
    if (awaiting_ack.empty()) return;
    // The records are written before the acks: a lost ack then only costs a
    // redelivery that is acked without running the handler again.
    if (const std::size_t failed = store.flush(); failed > 0) {
        metrics_.store_failures->Increment(static_cast<double>(failed));
        spdlog::warn("domain={}: {} done records not confirmed by the store; the local record keeps them",
                     settings_.domain.name, failed);
    }
    for (broker::Delivery* a : awaiting_ack) {
        ack(*a);
        notifyScheduled(*a, true);
        spdlog::debug("item handled domain={} id={} attempt={}{}{}", settings_.domain.name, a->id, a->attempt,
                      a->trace_id.empty() ? "" : " trace_id=", a->trace_id);
    }
    awaiting_ack.clear();
}

void DomainWorkers::ackHandledEvery(std::vector<broker::Delivery*>& awaiting_ack, broker::DoneStore& store,
                                    std::chrono::steady_clock::time_point now,
                                    std::chrono::steady_clock::time_point& last_ack) {
    if (awaiting_ack.empty() || now - last_ack < kAckEvery || store.shared()) return;
    last_ack = now;
    ackHandled(awaiting_ack, store);
}

std::optional<std::vector<std::optional<broker::AttemptRecord>>> DomainWorkers::attemptRecords(
    broker::DeliveryBatch& batch, const std::vector<bool>& done, broker::DoneStore& store) {
    std::vector<std::optional<broker::AttemptRecord>> records(batch.size());
    std::vector<std::string_view> ask;
    std::vector<std::size_t> ask_index;
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (done[i]) continue;
        records[i] = ledger_.find(batch[i]->id);
        // A first delivery has had no handler call anywhere: only
        // redeliveries are asked about (the fast path costs nothing).
        if (batch[i]->maybe_tried) {
            ask.push_back(batch[i]->id);
            ask_index.push_back(i);
        }
    }
    if (!ask.empty()) {
        auto known = store.attempts(ask);
        if (!known) {
            spdlog::warn("domain={}: {}", settings_.domain.name, known.message());
            return std::nullopt;
        }
        for (std::size_t j = 0; j < ask.size(); ++j) {
            auto& mine = records[ask_index[j]];
            const auto& shared = (*known)[j];
            if (!shared) continue;
            if (!mine || shared->calls > mine->calls || (shared->calls == mine->calls && shared->dead_letter)) mine = shared;
        }
    }
    for (std::size_t i = 0; i < batch.size(); ++i)
        if (records[i]) batch[i]->attempt = std::max(batch[i]->attempt, records[i]->calls + 1);
    return records;
}

std::optional<std::int64_t> DomainWorkers::admit(broker::Delivery& d, const WorkerSettings& s,
                                                 broker::DoneStore& store,
                                                 const std::optional<broker::AttemptRecord>& record) {
    const auto& dom = s.domain;
    if (d.id.size() > broker::kMaxWorkIdBytes) {
        deadLetter(d, metrics::DeadLetterReason::invalid_id, "invalid_id", store, false);
        return std::nullopt;
    }
    // Settled before, by this host or another: its handler calls are used
    // up (crashes included), or its dead letter waits for room in the DLQ.
    // It goes to the DLQ without another call.
    if (record && (record->dead_letter || static_cast<std::int64_t>(record->calls) >= s.retry.max_attempts)) {
        d.attempt = record->calls;
        deadLetter(d, metrics::deadLetterReasonFrom(record->label), record->reason, store, true);
        return std::nullopt;
    }
    // The safety net: the last delivery the broker will make.
    if (static_cast<std::int64_t>(d.deliveries) >= broker::deliveryLimit(s.retry.max_attempts)) {
        deadLetter(d, metrics::DeadLetterReason::max_deliveries_exceeded,
                   "delivered " + std::to_string(d.deliveries) + " times without being settled", store, record.has_value());
        return std::nullopt;
    }
    const std::int64_t now_ms = nowUnixMs();
    const std::int64_t deadline_ms = d.deadline_unix_ms.value_or(now_ms + dom.timeout_ms);
    if (deadline_ms <= now_ms) {
        deadLetter(d, metrics::DeadLetterReason::deadline_exceeded, "deadline_exceeded", store, record.has_value());
        return std::nullopt;
    }

    // Another worker of this host is running this id (a redelivery after a
    // dropped connection or an expired lease): never run it twice at once;
    // that run settles it (within its timeout).
    switch (done_.begin(d.id)) {
        case LocalDoneRecord::Claim::claimed: break;
        case LocalDoneRecord::Claim::running:
            d.defer(std::chrono::milliseconds(dom.timeout_ms));
            spdlog::info("item is being handled by another worker of this host; left to that run domain={} id={} attempt={}",
                         dom.name, d.id, d.attempt);
            return std::nullopt;
        case LocalDoneRecord::Claim::done:
            // Another copy (the other broker's, or a redelivery) finished
            // while this one waited in its batch.
            ackDuplicate(d);
            return std::nullopt;
    }
    return deadline_ms;
}

DomainWorkers::Outcome DomainWorkers::process(broker::Delivery& d, Slot& slot, const WorkerSettings& s,
                                              broker::DoneStore& store,
                                              const std::optional<broker::AttemptRecord>& record,
                                              const plugin::Handler& handler) {
    const auto& dom = s.domain;
    const auto deadline = admit(d, s, store, record);
    if (!deadline) return Outcome::settled;
    const std::int64_t deadline_ms = *deadline;
    const std::int64_t now_ms = nowUnixMs();

    kanban_context ctx;
    ctx.domain = dom.name;
    ctx.id = d.id;
    ctx.attempt = d.attempt;
    const auto start = std::chrono::steady_clock::now();
    ctx.deadline = start + std::chrono::milliseconds(std::min(deadline_ms - now_ms, dom.timeout_ms));
    ctx.on_progress = [](void* arg) { static_cast<broker::Delivery*>(arg)->progress(); };
    ctx.progress_arg = &d;
    ctx.load_headers = [](const void* arg, Headers& out) { static_cast<const broker::Delivery*>(arg)->headers(out); };
    ctx.headers_arg = &d;
    ctx.follow_up_rules = &follow_up_rules_;
    AttemptExtras extras;
    extras.plugin_version = handler.version;
    extras.span = beginSpan(d);
    if (extras.span) ctx.traceparent = extras.span->traceparent;

    kanban_work_item item{};
    item.struct_size = sizeof item;
    item.id = d.id.c_str();
    item.id_len = d.id.size();
    item.domain = dom.name.c_str();
    item.domain_len = dom.name.size();
    item.priority = static_cast<kanban_priority>(d.priority);
    item.payload = d.payload.empty() ? nullptr : d.payload.data();
    item.payload_len = d.payload.size();
    item.attempt = d.attempt;
    item.deadline_unix_ms = deadline_ms;

    char reason[kReasonCapacity] = {};
    kanban_result result{sizeof(kanban_result), KANBAN_STATUS_FAIL, reason, sizeof reason, -1};
    slot.busy_since_ns = start.time_since_epoch().count();
    {
        // A shutdown that began before this item started still cancels it.
        std::lock_guard lock(slot.ctx_mu);
        slot.ctx = &ctx;
        if (cancel_running_.load()) ctx.cancelled = true;
    }
    {
        std::lock_guard b(slot.batch_mu);
        slot.current = &d;
    }
    slot.deadline_ns = ctx.deadline.time_since_epoch().count();
    if (journal_) journal_->begin(slot.index, d.id, d.attempt);  // a crash from here on is charged to this item
    handler.instance->handle(item, &ctx, &result);
    if (slot.abandoned.load()) park();  // a stop or reload gave up on this call: its item went back
    if (journal_) journal_->end(slot.index);
    slot.deadline_ns = 0;
    {
        std::lock_guard b(slot.batch_mu);
        slot.current = nullptr;
    }
    {
        std::lock_guard lock(slot.ctx_mu);
        slot.ctx = nullptr;
    }
    slot.busy_since_ns = 0;
    const auto end = std::chrono::steady_clock::now();
    reason[sizeof reason - 1] = '\0';
    {
        std::lock_guard lock(ctx.follow_ups_mu);
        extras.follow_ups = std::move(ctx.follow_ups);
    }
    return conclude(d, s, store, record.has_value(),
                    {.status = static_cast<int>(result.status),
                     .reason = reason,
                     .overran = end > ctx.deadline,
                     .cancelled_by_stop = ctx.cancelled.load() && cancel_running_.load(),
                     .attempt = d.attempt,
                     .max_attempts = s.retry.max_attempts,
                     .retry_after_ms = result.retry_after_ms},
                    end - start, &extras);
}

DomainWorkers::Outcome DomainWorkers::conclude(broker::Delivery& d, const WorkerSettings& s, broker::DoneStore& store,
                                               bool had_record, const HandlerReturn& handler_return,
                                               std::chrono::nanoseconds took, AttemptExtras* extras) {
    const auto& dom = s.domain;
    HandlerReturn r = handler_return;
    std::string unpublished;  // why an ok's follow-ups could not be published
    if (r.status == KANBAN_STATUS_OK && extras != nullptr && !extras->follow_ups.empty()) {
        if (Status p = publishFollowUps(d, *extras); !p) {
            // Not acked without its follow-ups: the attempt is a retry (its
            // next run publishes them under the same ids).
            unpublished = "follow-ups not published: " + p.message();
            r.status = KANBAN_STATUS_RETRY;
            r.reason = unpublished;
            r.retry_after_ms = -1;
        }
    }
    done_.end(d.id, r.status == KANBAN_STATUS_OK);
    metrics_.handler_duration->Observe(std::chrono::duration<double>(took).count());
    const Decision decision = decide(r);
    if (extras != nullptr)
        endSpan(d, *extras, metrics::kOutcomes[static_cast<std::size_t>(decision.outcome)],
                decision.action != Action::ack && decision.action != Action::release, decision.reason);
    metrics_.processedInc(decision.outcome);
    switch (decision.action) {
        case Action::ack:
            if (decision.outcome == metrics::Outcome::timeout)
                spdlog::warn("handler finished after its deadline domain={} id={} attempt={}", dom.name, d.id, d.attempt);
            if (had_record) {  // its earlier calls' record is of no use any more
                ledger_.erase(d.id);
                store.forgetAttempts(d.id);
            }
            break;
        case Action::release:
            d.release();
            metrics_.nacked->Increment();
            spdlog::info("item handed back: its handler stopped for the shutdown domain={} id={} attempt={}", dom.name,
                         d.id, d.attempt);
            break;
        case Action::retry:
            charge(d, store, {d.attempt, false, "retries_exhausted", decision.reason});
            retry(d, decision.reason, s, r.retry_after_ms);
            break;
        case Action::dead_letter:
            deadLetter(d, decision.dead_letter_reason, decision.reason, store, had_record);
            break;
    }
    if (decision.action == Action::ack) return Outcome::ok;
    return decision.breaker == BreakerEffect::failure ? Outcome::failed : Outcome::settled;
}

void DomainWorkers::concludeCrash(broker::Delivery& d, const WorkerSettings& s, broker::DoneStore& store,
                                  bool had_record, const std::string& what, AttemptExtras* extras) {
    done_.end(d.id, false);
    metrics_.processedInc(metrics::Outcome::retry);
    const std::string reason = "handler_crashed: the runner process ended in the handler (" + what + ")";
    if (extras != nullptr) endSpan(d, *extras, "crash", true, reason);
    if (static_cast<std::int64_t>(d.attempt) >= s.retry.max_attempts) {
        deadLetter(d, metrics::DeadLetterReason::handler_crashed, reason, store, had_record);
    } else {
        charge(d, store, {d.attempt, false, "handler_crashed", reason});
        retry(d, reason, s);
    }
    breakerResult(false);
}

void DomainWorkers::charge(broker::Delivery& d, broker::DoneStore& store, const broker::AttemptRecord& record) {
    ledger_.put(d.id, record);
    if (Status s = store.recordAttempt(d.id, record); !s) {
        metrics_.store_failures->Increment();
        spdlog::warn("domain={} id={}: {}; this host's ledger keeps the count", settings_.domain.name, d.id, s.message());
    }
}

void DomainWorkers::notifyScheduled(const broker::Delivery& d, bool ok) {
    if (settings_.on_scheduled_settled && d.id.rfind("sched:", 0) == 0) settings_.on_scheduled_settled(d.id, ok);
}

void DomainWorkers::ack(broker::Delivery& d) {
    d.ack();
    metrics_.acked->Increment();
}

void DomainWorkers::ackDuplicate(broker::Delivery& d) {
    ack(d);
    metrics_.duplicates->Increment();
    spdlog::info("item already done, acked without calling the handler domain={} id={} attempt={}", settings_.domain.name,
                 d.id, d.attempt);
}

void DomainWorkers::retry(broker::Delivery& d, const std::string& reason, const WorkerSettings& s,
                          std::int64_t handler_delay_ms) {
    const auto& retry = s.retry;
    // The handler's own delay (Result::retry(reason, delay)) wins over the
    // backoff, within backoff_max_ms.
    const auto delay = handler_delay_ms >= 0
                           ? std::chrono::milliseconds(std::clamp<std::int64_t>(handler_delay_ms, 1, retry.backoff_max_ms))
                           : backoffDelay(d.attempt, retry.backoff_initial_ms, retry.backoff_max_ms, retry.jitter,
                                          unitRandom());
    if (handler_delay_ms >= 0)
        d.retryAfterChosen(delay);
    else
        d.retryAfter(delay);
    metrics_.nacked->Increment();
    spdlog::info("item will be retried domain={} id={} attempt={} delay_ms={} reason=\"{}\"{}{}", settings_.domain.name,
                 d.id, d.attempt, delay.count(), reason, d.trace_id.empty() ? "" : " trace_id=", d.trace_id);
}

void DomainWorkers::deadLetter(broker::Delivery& d, metrics::DeadLetterReason why, const std::string& reason,
                               broker::DoneStore& store, bool had_record) {
    const std::string& domain = settings_.domain.name;
    const std::string label(metrics::kDeadLetterReasons[static_cast<std::size_t>(why)]);
    if (Status s = d.deadLetter(reason, label); !s) {
        // The DLQ is full or unreachable. The item is settled all the same:
        // its record says so, and every later delivery (here or on another
        // host) offers it to the DLQ again without calling the handler, at a
        // bounded rate, until there is room. It stays in the work queue
        // (visible in its depth) and in kanban_dead_letters_pending.
        const std::uint32_t failures = ++dead_letter_failures_in_row_;
        charge(d, store, {d.attempt, true, label, reason});
        metrics_.dead_letter_failures->Increment();
        const auto delay = deadLetterRetryDelay(failures);
        d.retryAfter(delay);
        metrics_.nacked->Increment();
        {
            std::lock_guard lock(pending_mu_);
            pending_dead_letters_.insert(d.id);
            metrics_.dead_letters_pending->Set(static_cast<double>(pending_dead_letters_.size()));
        }
        spdlog::error("dead-lettering failed domain={} id={} attempt={} label={}: {}; the item stays in the work "
                      "queue and is offered to the DLQ again in {} ms, without its handler",
                      domain, d.id, d.attempt, label, s.message(), delay.count());
        return;
    }
    dead_letter_failures_in_row_ = 0;
    {
        std::lock_guard lock(pending_mu_);
        if (pending_dead_letters_.erase(d.id) > 0)
            metrics_.dead_letters_pending->Set(static_cast<double>(pending_dead_letters_.size()));
    }
    if (had_record) {
        ledger_.erase(d.id);
        store.forgetAttempts(d.id);  // a replay of it starts afresh
    }
    metrics_.deadLetteredInc(why);
    notifyScheduled(d, false);
    spdlog::warn("item dead-lettered domain={} id={} attempt={} reason=\"{}\" label={}{}{}", domain, d.id, d.attempt, reason,
                 label, d.trace_id.empty() ? "" : " trace_id=", d.trace_id);
}

}  // namespace kanban::host::worker
