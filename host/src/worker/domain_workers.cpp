#include "worker/domain_workers.hpp"

#include "common/clock.hpp"
#include "plugin/host_api.hpp"
#include "worker/backoff.hpp"
#include "worker/outcome_policy.hpp"

#include <spdlog/spdlog.h>

#include <thread>

namespace kanban::host::worker {
namespace {
// A max_in_flight slot is held for timeout_ms plus this: a holder that dies
// frees it then; a live one has returned or been given up on by then.
constexpr std::int64_t kLeaseGraceMs = 30000;
}  // namespace

DomainWorkers::DomainWorkers(WorkerSettings settings, std::shared_ptr<const plugin::Handler> handler,
                             broker::WorkQueue& queue, LocalDoneRecord& done, AttemptLedger& ledger,
                             metrics::DomainMetrics& metrics, std::unique_ptr<InflightJournal> journal)
    : settings_(std::move(settings)),
      follow_up_rules_{settings_.known_domain},
      live_(std::make_shared<const WorkerSettings>(settings_)),
      handler_(std::move(handler)),
      queue_(queue),
      done_(done),
      ledger_(ledger),
      metrics_(metrics),
      journal_(std::move(journal)),
      breaker_(settings_.breaker.failure_threshold, std::chrono::milliseconds(settings_.breaker.open_ms), kBackoffJitter,
               &unitRandom),
      rate_gate_(settings_.rates, settings_.domain.name) {
    for (std::int64_t i = 0; i < settings_.workers.max; ++i) {
        slots_.push_back(std::make_unique<Slot>());
        slots_.back()->index = static_cast<std::size_t>(i);
        slots_.back()->exited = true;
    }
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
        slot.exited = false;
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

bool DomainWorkers::joinUntil(std::chrono::steady_clock::time_point deadline) {
    std::lock_guard lock(slots_mu_);
    bool all = true;
    for (auto& slot : slots_) {
        if (!slot->thread.joinable()) continue;
        {
            std::unique_lock wait(mu_);
            exited_cv_.wait_until(wait, deadline, [&] { return slot->exited.load(); });
        }
        if (slot->exited.load()) {
            slot->thread.join();
            continue;
        }
        // Stuck in a handler that ignores cancellation: hand its item and
        // the unstarted rest of its batch back, and leave the thread.
        all = false;
        slot->abandoned = true;
        std::size_t handed = 0;
        std::string id;
        {
            std::lock_guard b(slot->batch_mu);
            if (slot->current != nullptr) {
                id = slot->current->id;
                slot->current->release();
                ++handed;
            }
            if (slot->batch != nullptr && !slot->handed_back)
                for (std::size_t j = slot->next; j < slot->batch->size(); ++j, ++handed) (*slot->batch)[j]->release();
            slot->handed_back = true;
        }
        if (journal_) journal_->abandon(slot->index);
        slot->thread.detach();
        spdlog::error("domain={}: worker {} still in its handler past timeout_ms and the grace period (id={}); "
                      "abandoned: {} item(s) handed back to the broker, the thread is left to the process",
                      name(), slot->index, id, handed);
    }
    return all;
}

void DomainWorkers::watch(std::chrono::steady_clock::time_point now) {
    const std::int64_t now_ns = now.time_since_epoch().count();
    for (auto& slot : slots_) {
        const std::int64_t deadline = slot->deadline_ns.load();
        if (deadline == 0 || now_ns <= deadline) continue;
        std::size_t handed = 0;
        std::string id;
        {
            std::lock_guard b(slot->batch_mu);
            if (slot->batch == nullptr || slot->handed_back || slot->current == nullptr) continue;
            for (std::size_t j = slot->next; j < slot->batch->size(); ++j, ++handed) (*slot->batch)[j]->release();
            slot->handed_back = true;
            id = slot->current->id;
        }
        if (handed == 0) continue;
        metrics_.nacked->Increment(static_cast<double>(handed));
        spdlog::warn("domain={}: the handler of id={} is past its timeout; {} unstarted item(s) of its batch handed "
                     "back to the broker (no attempt charged)",
                     name(), id, handed);
    }
}

std::size_t DomainWorkers::deadLettersPending() const {
    std::lock_guard lock(pending_mu_);
    return pending_dead_letters_.size();
}

void DomainWorkers::park() {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
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

std::vector<StalledItem> DomainWorkers::stalledItems(std::chrono::milliseconds threshold) const {
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    const std::int64_t limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(threshold).count();
    std::vector<StalledItem> out;
    for (const auto& slot : slots_) {
        const std::int64_t since = slot->busy_since_ns.load();
        if (since == 0 || now - since <= limit) continue;
        std::lock_guard b(slot->batch_mu);
        const std::string& id = slot->current != nullptr ? slot->current->id : slot->in_handler_id;
        if (id.empty()) continue;  // it just returned
        out.push_back({id, slot->current != nullptr ? slot->current->attempt : slot->in_handler_attempt,
                       std::chrono::duration<double>(std::chrono::steady_clock::duration(now - since)).count()});
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.in_handler_seconds > b.in_handler_seconds; });
    return out;
}

void DomainWorkers::postponeEarly(broker::DeliveryBatch& batch) {
    const std::int64_t now = nowUnixMs();
    std::erase_if(batch, [&](const std::unique_ptr<broker::Delivery>& d) {
        if (!d->not_before_unix_ms || *d->not_before_unix_ms <= now) return false;
        if (Status s = d->postpone(*d->not_before_unix_ms); !s) {
            // Not handled early all the same: back after a while (no handler call, no attempt).
            spdlog::warn("domain={} id={} is not due before {} and could not be set aside ({}); it comes back later",
                         settings_.domain.name, d->id, *d->not_before_unix_ms, s.message());
            d->retryAfter(std::clamp(std::chrono::milliseconds(*d->not_before_unix_ms - now), std::chrono::milliseconds(1),
                                     std::chrono::milliseconds(5000)));
        } else {
            spdlog::debug("domain={} id={} set aside until {} (Kanban-Not-Before)", settings_.domain.name, d->id,
                          *d->not_before_unix_ms);
        }
        return true;
    });
}

bool DomainWorkers::waitForRateStart(broker::DeliveryBatch& batch, const WorkerSettings& s) {
    const std::int64_t start_us = rate_gate_.reserve(static_cast<std::int64_t>(batch.size()), s.domain.rate_limit,
                                                     s.domain.rate_burst, s.workers.hosts);
    const auto began = std::chrono::steady_clock::now();
    // The items in hand must not reach their ack wait meanwhile.
    const auto refresh = (broker::ackWaitFor(s.domain.timeout_ms) - std::chrono::milliseconds(s.domain.timeout_ms)) / 2;
    auto refreshed = began;
    bool stopped = false;
    for (std::int64_t left_us; (left_us = start_us - nowUnixNs() / 1000) > 0;) {
        if (stop_.load()) {
            stopped = true;
            break;
        }
        sleepUnlessStopped(std::min(std::chrono::milliseconds(left_us / 1000 + 1), std::chrono::milliseconds(250)));
        if (std::chrono::steady_clock::now() - refreshed >= refresh) {
            for (auto& d : batch) d->progress();
            refreshed = std::chrono::steady_clock::now();
        }
    }
    metrics_.rate_limited_seconds->Increment(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    if (!stopped) return true;
    for (auto& d : batch) d->release();  // not started: not an attempt
    return false;
}

bool DomainWorkers::sleepUnlessStopped(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void DomainWorkers::setPaused(bool paused) {
    {
        std::lock_guard lock(mu_);  // a worker between its check and its wait sees the change
        paused_ = paused;
    }
    metrics_.paused->Set(paused ? 1 : 0);
    cv_.notify_all();
    if (paused) interruptWaits(0);  // idle workers stop waiting for work now
}

void DomainWorkers::waitWhilePaused(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [this] { return stop_.load() || !paused_.load(); });
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

void DomainWorkers::recordBreakerState(CircuitBreaker::State state) {
    metrics_.circuit_state->Set(static_cast<double>(state));
    metrics_.circuit_transitions[static_cast<std::size_t>(state)]->Increment();
}

void DomainWorkers::breakerResult(bool ok) {
    const bool changed = ok ? breaker_.onSuccess() : breaker_.onFailure(std::chrono::steady_clock::now());
    if (!changed) return;
    const auto state = breaker_.state();
    recordBreakerState(state);
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
    std::chrono::milliseconds lease_wait{20};  // between tries for a max_in_flight slot
    bool slots_unreadable = false;             // logged once until they are readable again
    for (;;) {
    while (!stop_.load() && index < target_.load()) {
        // Runners that keep crashing are restarted with a backoff, before
        // a pull: no batch waits for it.
        if (const auto backoff = runnerBackoff(slot); backoff.count() > 0) {
            sleepUnlessStopped(std::min(backoff, std::chrono::milliseconds(1000)));
            continue;
        }
        // Paused by an operator: nobody pulls; items wait in the broker.
        // (The consumer is opened first: that declares the topology, which
        // readiness waits for even when every domain is paused.)
        const auto park = [&] {
            ++parked_;
            waitWhilePaused(std::chrono::milliseconds(1000));
            --parked_;
        };
        if (paused_.load() && consumer) {
            park();
            continue;
        }
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
            if (in_use->domain.max_in_flight > 0)  // per priority consumer; the slots cap the domain as a whole
                spec.max_ack_pending = std::min(spec.max_ack_pending, in_use->domain.max_in_flight);
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
        if (paused_.load()) {
            if (permit.trial) breaker_.trialUnused();
            park();
            continue;
        }
        // max_in_flight: one slot (shared by every host) per item in hand.
        std::optional<flow::Lease> lease;
        const std::int64_t cap = settings_.leases ? in_use->domain.max_in_flight : 0;
        if (cap > 0) {
            auto got = settings_.leases->acquire(domain, cap, in_use->domain.timeout_ms + kLeaseGraceMs);
            if (!got || !*got) {
                if (permit.trial) breaker_.trialUnused();
                if (!got && index == 0 && !slots_unreadable)
                    spdlog::warn("worker: domain={} pulls nothing: its max_in_flight slots cannot be read ({})", domain,
                                 got.message());
                slots_unreadable = !got;
                sleepUnlessStopped(lease_wait);
                lease_wait = std::min(lease_wait * 2, std::chrono::milliseconds(1000));
                continue;
            }
            lease = **got;
            lease_wait = std::chrono::milliseconds(20);
            if (slots_unreadable && index == 0) spdlog::info("worker: domain={} max_in_flight slots readable again", domain);
            slots_unreadable = false;
        }
        // rate_limit: one worker of the host at a time fetches (at most
        // rate_burst) and waits for the start the shared state gives it.
        const flow::RateLimit& rate = in_use->domain.rate_limit;
        flow::RateGate::Turn rate_turn;
        if (rate) {
            // (Waiting here keeps a max_in_flight slot: no churn on the slots.)
            while (!(rate_turn = rate_gate_.enter(std::chrono::milliseconds(250))).held() && !stop_.load() &&
                   index < target_.load() && !paused_.load()) {
            }
            if (!rate_turn.held()) {
                if (permit.trial) breaker_.trialUnused();
                if (lease) settings_.leases->release(*lease);
                continue;
            }
        }
        const int max = permit.trial || cap > 0 ? 1
                        : rate ? static_cast<int>(std::min(in_use->workers.pull_batch, in_use->domain.rate_burst))
                               : static_cast<int>(in_use->workers.pull_batch);
        auto batch = consumer->fetch(max, settings_.idle_wait);
        if (batch) postponeEarly(*batch);
        if (batch && !batch->empty() && rate && !waitForRateStart(*batch, *in_use)) batch->clear();
        rate_turn.leave();
        bool healthy = static_cast<bool>(batch);
        if (!batch) {
            spdlog::warn("worker {} of domain={}: {}; reopening", index, domain, batch.message());
        } else {
            if (permit.trial && batch->empty() && breaker_.trialFoundNothing(std::chrono::steady_clock::now())) {
                recordBreakerState(CircuitBreaker::State::closed);
                spdlog::info("circuit closed domain={}: nothing waits to be tried", domain);
            }
            const auto now_ns = nowUnixNs();
            for (const auto& d : *batch) {
                metrics_.pulled[static_cast<std::size_t>(d->priority)]->Increment();
                if (!d->maybe_tried && d->published_unix_ns)
                    metrics_.item_wait->Observe(static_cast<double>(std::max<std::int64_t>(0, now_ns - *d->published_unix_ns)) / 1e9);
            }
            metrics_.in_flight->Increment(static_cast<double>(batch->size()));
            healthy = handleBatch(*batch, *store, slot, permit.trial);
            metrics_.in_flight->Decrement(static_cast<double>(batch->size()));
            // A trial that decided nothing (expired, a duplicate): let another one try.
            if (permit.trial && breaker_.state() == CircuitBreaker::State::half_open) breaker_.trialUnused();
        }
        if (lease) settings_.leases->release(*lease);
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
    dropRunner(slot, std::nullopt);
    std::lock_guard retire(retire_mu_);
    if (!stop_.load() && index < target_.load()) continue;  // the target was raised meanwhile: stay
    --running_;
    metrics_.workers->Set(static_cast<double>(running_.load()));
    slot.live = false;
    if (!stop_.load()) spdlog::info("worker {} of domain={} retired (pool target {})", index, domain, target_.load());
    {
        std::lock_guard lock(mu_);
        slot.exited = true;
    }
    exited_cv_.notify_all();
    return;
    }
}

void DomainWorkers::swapHandler(std::shared_ptr<const plugin::Handler> handler) {
    std::lock_guard lock(handler_mu_);
    handler_ = std::move(handler);
}

std::shared_ptr<const plugin::Handler> DomainWorkers::handler() const {
    std::lock_guard lock(handler_mu_);
    return handler_;
}

}  // namespace kanban::host::worker
