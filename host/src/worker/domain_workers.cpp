#include "worker/domain_workers.hpp"

#include "common/clock.hpp"
#include "plugin/host_api.hpp"
#include "worker/backoff.hpp"
#include "worker/outcome_policy.hpp"

#include <spdlog/spdlog.h>

#include <random>

namespace kanban::host::worker {
namespace {

constexpr double kBackoffJitter = 0.2;
constexpr std::size_t kReasonCapacity = 512;

double unitRandom() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

DomainWorkers::DomainWorkers(WorkerSettings settings, std::shared_ptr<const plugin::Instance> handler,
                             broker::WorkQueue& queue, LocalDoneRecord& done, metrics::DomainMetrics& metrics)
    : settings_(std::move(settings)),
      live_(std::make_shared<const WorkerSettings>(settings_)),
      handler_(std::move(handler)),
      queue_(queue),
      done_(done),
      metrics_(metrics),
      breaker_(settings_.breaker.failure_threshold, std::chrono::milliseconds(settings_.breaker.open_ms), kBackoffJitter,
               &unitRandom) {
    for (std::int64_t i = 0; i < settings_.workers.max; ++i) slots_.push_back(std::make_unique<Slot>());
    metrics_.circuit_state->Set(0);
}

DomainWorkers::~DomainWorkers() {
    requestStop();
    join();
}

std::size_t DomainWorkers::capacity() const {
    return std::min(slots_.size(), static_cast<std::size_t>(std::max<std::int64_t>(0, live()->workers.max)));
}

void DomainWorkers::setTarget(std::size_t count) {
    std::lock_guard lock(slots_mu_);
    if (stop_.load()) return;
    count = std::min(count, capacity());
    target_ = count;
    metrics_.workers_target->Set(static_cast<double>(count));
    // Workers at index >= count retire by themselves between batches. A
    // worker on its way out sees the new target when it decides, under
    // retire_mu_, and stays; one that already left gets a new thread here.
    for (std::size_t i = 0; i < count; ++i) {
        Slot& slot = *slots_[i];
        std::lock_guard retire(retire_mu_);
        if (slot.live.load()) continue;
        if (slot.thread.joinable()) slot.thread.join();  // it left: only its return remains
        slot.live = true;
        ++running_;
        slot.thread = std::thread([this, i] { run(i); });
    }
    metrics_.workers->Set(static_cast<double>(running_.load()));
    interruptWaits(count);  // surplus workers retire now, not after an idle wait
}

void DomainWorkers::interruptWaits(std::size_t from) {
    for (std::size_t i = from; i < slots_.size(); ++i) {
        std::lock_guard lock(slots_[i]->consumer_mu);
        if (slots_[i]->consumer != nullptr) slots_[i]->consumer->interrupt();
    }
}

void DomainWorkers::requestStop(bool cancel_running) {
    {
        std::lock_guard lock(mu_);
        if (cancel_running) cancel_running_ = true;
        stop_ = true;
    }
    cv_.notify_all();
    interruptWaits(0);
    if (!cancel_running) return;
    for (auto& slot : slots_) {
        std::lock_guard lock(slot->ctx_mu);
        if (slot->ctx != nullptr) slot->ctx->cancelled = true;
    }
}

void DomainWorkers::join() {
    std::lock_guard lock(slots_mu_);
    for (auto& slot : slots_)
        if (slot->thread.joinable()) slot->thread.join();
    metrics_.workers->Set(static_cast<double>(running_.load()));
}

std::size_t DomainWorkers::stalled(std::chrono::milliseconds threshold) const {
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    const std::int64_t limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(threshold).count();
    std::size_t n = 0;
    for (const auto& slot : slots_) {
        const std::int64_t since = slot->busy_since_ns.load();
        if (since != 0 && now - since > limit) ++n;
    }
    return n;
}

bool DomainWorkers::sleepUnlessStopped(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

std::shared_ptr<const WorkerSettings> DomainWorkers::live() const {
    std::lock_guard lock(live_mu_);
    return live_;
}

void DomainWorkers::updateSettings(const WorkerSettings& settings) {
    auto next = std::make_shared<WorkerSettings>(settings);
    if (next->workers.max > static_cast<std::int64_t>(slots_.size())) {
        spdlog::warn("domain={}: workers.max {} needs a restart (started with {}); {} applies until then", name(),
                     next->workers.max, slots_.size(), slots_.size());
        next->workers.max = static_cast<std::int64_t>(slots_.size());
    }
    breaker_.configure(next->breaker.failure_threshold, std::chrono::milliseconds(next->breaker.open_ms));
    {
        std::lock_guard lock(live_mu_);
        live_ = std::move(next);
    }
    interruptWaits(0);  // idle workers take the new settings now
}

void DomainWorkers::breakerResult(bool ok) {
    const bool changed = ok ? breaker_.onSuccess() : breaker_.onFailure(std::chrono::steady_clock::now());
    if (!changed) return;
    const auto state = breaker_.state();
    metrics_.circuit_state->Set(static_cast<double>(state));
    metrics_.circuit_transitions[static_cast<std::size_t>(state)]->Increment();
    if (state == CircuitBreaker::State::open) {
        const auto now_live = live();
        spdlog::warn("circuit opened domain={}: {} consecutive failures; pulling stops for up to {} ms", settings_.domain.name,
                     now_live->breaker.failure_threshold, now_live->breaker.open_ms);
    } else {
        spdlog::info("circuit closed domain={}: the trial item succeeded", settings_.domain.name);
    }
}

void DomainWorkers::run(std::size_t index) {
    Slot& slot = *slots_[index];
    const std::string& domain = settings_.domain.name;
    broker::ConsumerSpec spec;
    spec.domain = domain;
    std::shared_ptr<const WorkerSettings> in_use;  // what `spec` and the consumer were made from

    std::unique_ptr<broker::Consumer> consumer;
    // Replaces the worker's consumer; interruptWaits() sees it through the slot.
    const auto useConsumer = [&](std::unique_ptr<broker::Consumer> next) {
        {
            std::lock_guard lock(slot.consumer_mu);
            slot.consumer = next.get();
            // A stop or a smaller target that came while the consumer was
            // being opened found no consumer to interrupt: interrupt it now
            // (stop_ and target_ change before interruptWaits takes this lock).
            if (next && (stop_.load() || index >= target_.load())) next->interrupt();
        }
        consumer = std::move(next);
    };
    std::unique_ptr<broker::DoneStore> store;
    std::chrono::milliseconds retry_wait{250};
    for (;;) {
    while (!stop_.load() && index < target_.load()) {
        // Jidoka: while the breaker is open nobody pulls; items wait in the broker.
        const auto permit = breaker_.acquire(std::chrono::steady_clock::now());
        if (!permit.allowed) {
            const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(permit.retry_at -
                                                                                    std::chrono::steady_clock::now());
            sleepUnlessStopped(std::clamp(wait, std::chrono::milliseconds(1), std::chrono::milliseconds(1000)));
            continue;
        }
        if (permit.trial) {
            metrics_.circuit_state->Set(static_cast<double>(CircuitBreaker::State::half_open));
            spdlog::info("circuit half-open domain={}: one trial item", domain);
        }
        if (auto now_live = live(); now_live != in_use) {
            // First round, or a reload changed the settings: (re)open with them.
            in_use = now_live;
            spec.timeout_ms = in_use->domain.timeout_ms;
            spec.max_attempts = in_use->retry.max_attempts;
            spec.max_ack_pending = in_use->workers.hosts * in_use->workers.max * in_use->workers.pull_batch;
            spec.starvation_ms = in_use->workers.starvation_ms;
            spec.pull_batch = in_use->workers.pull_batch;
            store.reset();
            useConsumer(nullptr);
        }
        if (!consumer) {
            auto opened = queue_.openConsumer(spec);
            auto opened_store = opened ? queue_.openDoneStore() : Result<std::unique_ptr<broker::DoneStore>>(opened.error());
            if (!opened || !opened_store) {
                if (permit.trial) breaker_.trialUnused();
                if (index == 0)
                    spdlog::warn("worker: cannot open consumer domain={}: {}", domain,
                                 opened ? opened_store.message() : opened.message());
                sleepUnlessStopped(retry_wait);
                retry_wait = std::min(retry_wait * 2, std::chrono::milliseconds(5000));
                continue;
            }
            useConsumer(std::move(*opened));
            store = std::move(*opened_store);
            retry_wait = std::chrono::milliseconds(250);
            spdlog::debug("worker {} of domain={} pulling", index, domain);
        }
        const int max = permit.trial ? 1 : static_cast<int>(in_use->workers.pull_batch);
        auto batch = consumer->fetch(max, settings_.idle_wait);
        bool healthy = static_cast<bool>(batch);
        if (!batch) {
            spdlog::warn("worker {} of domain={}: {}; reopening", index, domain, batch.message());
        } else {
            if (permit.trial && batch->empty()) breaker_.trialUnused();
            const auto now_ns = nowUnixNs();
            for (const auto& d : *batch) {
                metrics_.pulled[static_cast<std::size_t>(d->priority)]->Increment();
                if (d->attempt == 1 && d->published_unix_ns)
                    metrics_.item_wait->Observe(static_cast<double>(std::max<std::int64_t>(0, now_ns - *d->published_unix_ns)) / 1e9);
            }
            metrics_.in_flight->Increment(static_cast<double>(batch->size()));
            healthy = handleBatch(*batch, *store, slot, permit.trial);
            metrics_.in_flight->Decrement(static_cast<double>(batch->size()));
            // A trial that decided nothing (expired, a duplicate): let another one try.
            if (permit.trial && breaker_.state() == CircuitBreaker::State::half_open) breaker_.trialUnused();
        }
        if (!healthy) {
            if (permit.trial) breaker_.trialUnused();
            // Drop the consumer and open a new one after a backoff: never spin.
            store.reset();
            useConsumer(nullptr);
            sleepUnlessStopped(retry_wait);
        }
    }
    store.reset();
    useConsumer(nullptr);  // can take a while (leaving a quiet wait flushes)
    std::lock_guard retire(retire_mu_);
    if (!stop_.load() && index < target_.load()) continue;  // the target was raised meanwhile: stay
    --running_;
    metrics_.workers->Set(static_cast<double>(running_.load()));
    slot.live = false;
    if (!stop_.load()) spdlog::info("worker {} of domain={} retired (pool target {})", index, domain, target_.load());
    return;
    }
}

bool DomainWorkers::handleBatch(broker::DeliveryBatch& batch, broker::DoneStore& store, Slot& slot, bool trial) {
    const std::string& domain = settings_.domain.name;
    const auto now_live = live();  // one snapshot for the batch
    const auto& retry = now_live->retry;

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
        // New or done cannot be told apart now: hand the unknown items back
        // for a later delivery (the delay keeps this from spinning).
        metrics_.store_failures->Increment();
        spdlog::warn("domain={}: {}; handing back {} items", domain, known.message(), ask.size());
        for (std::size_t i : ask_index) {
            batch[i]->retryAfter(backoffDelay(1, retry.backoff_initial_ms, retry.backoff_max_ms, kBackoffJitter, unitRandom()));
            metrics_.nacked->Increment();
        }
        for (std::size_t i = 0; i < batch.size(); ++i)
            if (done[i]) ack(*batch[i]);
        return false;
    } else {
        for (std::size_t j = 0; j < ask_index.size(); ++j) done[ask_index[j]] = (*known)[j];
    }

    // Items wait in the batch while earlier ones run. Every item in hand is
    // refreshed (InProgress) once half the ack-wait margin has passed, so
    // none expires while a handler keeps to its timeout. If even that was
    // missed (a handler overran by far), the broker may have handed the
    // rest to someone else already: leave them to it.
    const auto ack_wait = broker::ackWaitFor(now_live->domain.timeout_ms);
    const auto refresh_every = (ack_wait - std::chrono::milliseconds(now_live->domain.timeout_ms)) / 2;
    auto last_refresh = std::chrono::steady_clock::now();
    std::vector<broker::Delivery*> awaiting_ack;  // handled ok, record in flight
    for (std::size_t i = 0; i < batch.size(); ++i) {
        broker::Delivery& d = *batch[i];
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
            break;
        }
        const auto now = std::chrono::steady_clock::now();
        if (now - last_refresh >= ack_wait) {
            const std::size_t left = batch.size() - i;
            spdlog::warn("domain={}: {} items waited past their ack wait behind an overrunning handler; "
                         "leaving them to the broker's redelivery",
                         domain, left);
            break;
        }
        if (now - last_refresh >= refresh_every) {
            for (std::size_t j = i; j < batch.size(); ++j)
                if (!done[j]) batch[j]->progress();
            for (broker::Delivery* a : awaiting_ack) a->progress();
            last_refresh = now;
        }
        switch (process(d, slot, *now_live)) {
            case Outcome::ok:
                store.record(d.id);
                awaiting_ack.push_back(&d);
                breakerResult(true);
                break;
            case Outcome::failed: breakerResult(false); break;
            case Outcome::settled: break;
        }
    }
    if (awaiting_ack.empty()) return true;

    // The records are written before the acks: a lost ack then only costs a
    // redelivery that is acked without running the handler again.
    if (const std::size_t failed = store.flush(); failed > 0) {
        metrics_.store_failures->Increment(static_cast<double>(failed));
        spdlog::warn("domain={}: {} done records not confirmed by the store; the local record keeps them", domain, failed);
    }
    for (broker::Delivery* a : awaiting_ack) {
        ack(*a);
        notifyScheduled(*a, true);
        spdlog::debug("item handled domain={} id={} attempt={}", domain, a->id, a->attempt);
    }
    return true;
}

DomainWorkers::Outcome DomainWorkers::process(broker::Delivery& d, Slot& slot, const WorkerSettings& s) {
    const auto& dom = s.domain;
    if (d.id.size() > broker::kMaxWorkIdBytes) {
        deadLetter(d, metrics::DeadLetterReason::invalid_id, "invalid_id", s);
        return Outcome::settled;
    }
    // Deliveries the host never settled (a crash, a lost lease) still count:
    // the attempt is checked before the handler runs, so an item that kills
    // the process cannot crash it forever.
    if (static_cast<std::int64_t>(d.attempt) > s.retry.max_attempts) {
        deadLetter(d, metrics::DeadLetterReason::max_deliveries_exceeded, "max_deliveries_exceeded", s);
        return Outcome::settled;
    }
    const std::int64_t now_ms = nowUnixMs();
    const std::int64_t deadline_ms = d.deadline_unix_ms.value_or(now_ms + dom.timeout_ms);
    if (deadline_ms <= now_ms) {
        deadLetter(d, metrics::DeadLetterReason::deadline_exceeded, "deadline_exceeded", s);
        return Outcome::settled;
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
            return Outcome::settled;
        case LocalDoneRecord::Claim::done:
            // Another copy (the other broker's, or a redelivery) finished
            // while this one waited in its batch.
            ackDuplicate(d);
            return Outcome::settled;
    }

    kanban_context ctx;
    ctx.domain = dom.name;
    ctx.id = d.id;
    ctx.attempt = d.attempt;
    const auto start = std::chrono::steady_clock::now();
    ctx.deadline = start + std::chrono::milliseconds(std::min(deadline_ms - now_ms, dom.timeout_ms));
    ctx.on_progress = [](void* arg) { static_cast<broker::Delivery*>(arg)->progress(); };
    ctx.progress_arg = &d;

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
    kanban_result result{sizeof(kanban_result), KANBAN_STATUS_FAIL, reason, sizeof reason};
    slot.busy_since_ns = start.time_since_epoch().count();
    {
        // A shutdown that began before this item started still cancels it.
        std::lock_guard lock(slot.ctx_mu);
        slot.ctx = &ctx;
        if (cancel_running_.load()) ctx.cancelled = true;
    }
    const auto generation = handler();  // held until this item is done
    generation->handle(item, &ctx, &result);
    {
        std::lock_guard lock(slot.ctx_mu);
        slot.ctx = nullptr;
    }
    slot.busy_since_ns = 0;
    done_.end(d.id, result.status == KANBAN_STATUS_OK);
    const auto end = std::chrono::steady_clock::now();
    reason[sizeof reason - 1] = '\0';
    metrics_.handler_duration->Observe(std::chrono::duration<double>(end - start).count());

    const Decision decision = decide({.status = static_cast<int>(result.status),
                                      .reason = reason,
                                      .overran = end > ctx.deadline,
                                      .cancelled_by_stop = ctx.cancelled.load() && cancel_running_.load(),
                                      .attempt = d.attempt,
                                      .max_attempts = s.retry.max_attempts});
    metrics_.processedInc(decision.outcome);
    switch (decision.action) {
        case Action::ack:
            if (decision.outcome == metrics::Outcome::timeout)
                spdlog::warn("handler finished after its deadline domain={} id={} attempt={}", dom.name, d.id, d.attempt);
            break;
        case Action::release:
            d.release();
            metrics_.nacked->Increment();
            spdlog::info("item handed back: its handler stopped for the shutdown domain={} id={} attempt={}", dom.name,
                         d.id, d.attempt);
            break;
        case Action::retry: retry(d, decision.reason, s); break;
        case Action::dead_letter: deadLetter(d, decision.dead_letter_reason, decision.reason, s); break;
    }
    if (decision.action == Action::ack) return Outcome::ok;
    return decision.breaker == BreakerEffect::failure ? Outcome::failed : Outcome::settled;
}

void DomainWorkers::swapHandler(std::shared_ptr<const plugin::Instance> handler) {
    std::lock_guard lock(handler_mu_);
    handler_ = std::move(handler);
}

std::shared_ptr<const plugin::Instance> DomainWorkers::handler() const {
    std::lock_guard lock(handler_mu_);
    return handler_;
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

void DomainWorkers::retry(broker::Delivery& d, const std::string& reason, const WorkerSettings& s) {
    const auto& retry = s.retry;
    const auto delay = backoffDelay(d.attempt, retry.backoff_initial_ms, retry.backoff_max_ms, kBackoffJitter, unitRandom());
    d.retryAfter(delay);
    metrics_.nacked->Increment();
    spdlog::info("item will be retried domain={} id={} attempt={} delay_ms={} reason=\"{}\"", settings_.domain.name, d.id,
                 d.attempt, delay.count(), reason);
}

void DomainWorkers::deadLetter(broker::Delivery& d, metrics::DeadLetterReason why, const std::string& reason,
                               const WorkerSettings& s) {
    const auto& retry = s.retry;
    const std::string& domain = settings_.domain.name;
    if (Status s = d.deadLetter(reason); !s) {
        // The item stays with the broker; try again after a backoff.
        spdlog::error("dead-lettering failed domain={} id={} attempt={}: {}", domain, d.id, d.attempt, s.message());
        d.retryAfter(backoffDelay(1, retry.backoff_initial_ms, retry.backoff_max_ms, kBackoffJitter, unitRandom()));
        metrics_.nacked->Increment();
        return;
    }
    metrics_.deadLetteredInc(why);
    notifyScheduled(d, false);
    spdlog::warn("item dead-lettered domain={} id={} attempt={} reason=\"{}\"", domain, d.id, d.attempt, reason);
}

}  // namespace kanban::host::worker
