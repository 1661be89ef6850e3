#include "worker/domain_workers.hpp"

#include "common/clock.hpp"
#include "plugin/host_api.hpp"
#include "worker/backoff.hpp"

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
                             broker::WorkQueue& queue)
    : settings_(std::move(settings)), handler_(std::move(handler)), queue_(queue) {}

DomainWorkers::~DomainWorkers() {
    requestStop();
    join();
}

void DomainWorkers::start(std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) threads_.emplace_back([this, i] { run(i); });
}

void DomainWorkers::requestStop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
}

void DomainWorkers::join() {
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
}

bool DomainWorkers::sleepUnlessStopped(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return !cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void DomainWorkers::run(std::size_t index) {
    const std::string& domain = settings_.domain.name;
    broker::ConsumerSpec spec;
    spec.domain = domain;
    spec.timeout_ms = settings_.domain.timeout_ms;
    spec.max_attempts = settings_.retry.max_attempts;
    spec.max_ack_pending = settings_.workers.max * settings_.workers.pull_batch;

    std::unique_ptr<broker::Consumer> consumer;
    std::chrono::milliseconds retry_wait{250};
    while (!stop_.load()) {
        if (!consumer) {
            auto opened = queue_.openConsumer(spec);
            if (!opened) {
                if (index == 0) spdlog::warn("worker: cannot open consumer domain={}: {}", domain, opened.message());
                sleepUnlessStopped(retry_wait);
                retry_wait = std::min(retry_wait * 2, std::chrono::milliseconds(5000));
                continue;
            }
            consumer = std::move(*opened);
            retry_wait = std::chrono::milliseconds(250);
            spdlog::debug("worker {} of domain={} pulling", index, domain);
        }
        auto batch = consumer->fetch(static_cast<int>(settings_.workers.pull_batch), settings_.idle_wait);
        if (!batch) {
            // Drop the consumer and open a new one after a backoff: never spin.
            spdlog::warn("worker {} of domain={}: {}; reopening", index, domain, batch.message());
            consumer.reset();
            sleepUnlessStopped(retry_wait);
            continue;
        }
        counters_.pulled.fetch_add(batch->size(), std::memory_order_relaxed);
        for (auto& d : *batch) {
            if (stop_.load()) {
                d->release();  // not started: back to the broker for prompt redelivery
                counters_.released.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            process(*d);
        }
    }
}

void DomainWorkers::process(broker::Delivery& d) {
    const auto& dom = settings_.domain;
    const std::int64_t now_ms = nowUnixMs();
    const std::int64_t deadline_ms = d.deadline_unix_ms.value_or(now_ms + dom.timeout_ms);
    if (deadline_ms <= now_ms) {
        settleFailure(d, /*permanent=*/true, "deadline_exceeded");
        return;
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
    handler_->handle(item, &ctx, &result);
    reason[sizeof reason - 1] = '\0';
    const bool overran = std::chrono::steady_clock::now() > ctx.deadline;

    switch (result.status) {
        case KANBAN_STATUS_OK:
            // Done, even if late: running it again would repeat its effects.
            d.ack();
            counters_.ok.fetch_add(1, std::memory_order_relaxed);
            spdlog::debug("item handled domain={} id={} attempt={}", dom.name, d.id, d.attempt);
            return;
        case KANBAN_STATUS_RETRY:
            settleFailure(d, false, overran ? "timeout" : (reason[0] != '\0' ? reason : "retry"));
            return;
        case KANBAN_STATUS_FAIL:
            settleFailure(d, true, reason[0] != '\0' ? reason : "fail");
            return;
    }
    settleFailure(d, true, "plugin returned invalid status " + std::to_string(static_cast<int>(result.status)));
}

void DomainWorkers::settleFailure(broker::Delivery& d, bool permanent, const std::string& reason) {
    const auto& retry = settings_.retry;
    const std::string& domain = settings_.domain.name;
    if (!permanent && static_cast<std::int64_t>(d.attempt) < retry.max_attempts) {
        const auto delay = backoffDelay(d.attempt, retry.backoff_initial_ms, retry.backoff_max_ms, kBackoffJitter,
                                        unitRandom());
        d.retryAfter(delay);
        counters_.retried.fetch_add(1, std::memory_order_relaxed);
        spdlog::info("item will be retried domain={} id={} attempt={} delay_ms={} reason=\"{}\"", domain, d.id,
                     d.attempt, delay.count(), reason);
        return;
    }
    counters_.failed.fetch_add(1, std::memory_order_relaxed);
    if (Status s = d.deadLetter(reason); !s) {
        // The item stays with the broker; try again after a backoff.
        spdlog::error("dead-lettering failed domain={} id={} attempt={}: {}", domain, d.id, d.attempt, s.message());
        d.retryAfter(backoffDelay(1, retry.backoff_initial_ms, retry.backoff_max_ms, kBackoffJitter, unitRandom()));
        return;
    }
    counters_.dead_lettered.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("item dead-lettered domain={} id={} attempt={} reason=\"{}\"", domain, d.id, d.attempt, reason);
}

}  // namespace kanban::host::worker
