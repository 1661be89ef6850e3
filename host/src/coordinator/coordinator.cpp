#include "coordinator/coordinator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/clock.hpp"

namespace kanban::host::coordinator {

std::int64_t targetWorkers(double avg_depth, std::int64_t min, std::int64_t max) {
    const auto wanted = static_cast<std::int64_t>(avg_depth / 20.0) + 2;
    return std::max(min, std::min(max, wanted));
}

Coordinator::Coordinator(const config::Config& cfg, broker::Inspector& brokers, metrics::Metrics& metrics,
                         std::function<std::vector<Domain>()> domains, std::function<void()> on_tick)
    : brokers_(brokers),
      metrics_(metrics),
      domains_(std::move(domains)),
      on_tick_(std::move(on_tick)),
      cfg_(std::make_shared<const config::Config>(cfg)),
      snapshot_(std::make_shared<const Snapshot>()) {}

Coordinator::~Coordinator() { stop(); }

void Coordinator::start() {
    thread_ = std::thread([this] { run(); });
}

void Coordinator::stop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void Coordinator::reconfigure(const config::Config& cfg) {
    {
        std::lock_guard lock(mu_);
        cfg_ = std::make_shared<const config::Config>(cfg);
    }
    cv_.notify_all();
}

std::shared_ptr<const config::Config> Coordinator::cfg() const {
    std::lock_guard lock(mu_);
    return cfg_;
}

std::shared_ptr<const Snapshot> Coordinator::snapshot() const {
    std::lock_guard lock(mu_);
    return snapshot_;
}

std::optional<std::uint64_t> Coordinator::lastDepth(const std::string& domain) const {
    const auto snap = snapshot();
    auto it = snap->domains.find(domain);
    if (it == snap->domains.end()) return std::nullopt;
    return it->second.depth;
}

void Coordinator::run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
        lock.unlock();
        tick();
        lock.lock();
        // Woken early by stop() or by a new interval (reconfigure).
        const auto interval = std::chrono::milliseconds(cfg_->coordinator.health_interval_ms);
        const auto cfg_then = cfg_;
        cv_.wait_for(lock, interval, [&] { return stop_ || cfg_ != cfg_then; });
    }
}

void Coordinator::tick() {
    std::lock_guard tick_lock(tick_mu_);
    const auto cfg = this->cfg();
    brokers_.refresh();
    metrics_.setActiveBackend(brokers_.backendName());

    const auto domains = domains_();
    std::vector<std::string> names;
    names.reserve(domains.size());
    const auto stall = std::chrono::milliseconds(cfg->coordinator.stall_threshold_ms);
    for (const auto& d : domains) {
        names.push_back(d.name);
        if (d.pool) metrics_.domain(d.name).stalled->Set(static_cast<double>(d.pool->stalled(stall)));
    }

    // The broker I/O of the tick: no lock held.
    const broker::QueueReport report = brokers_.inspect(names, {.dead_letters = true, .oldest = true, .sweep_acked = true});

    if (auto nats = report.backends.find("nats"); nats != report.backends.end() && nats->second.unclaimed)
        reportOrphans(*nats->second.unclaimed);

    const auto window = static_cast<std::size_t>(std::max<std::int64_t>(1, cfg->coordinator.depth_window));
    auto snap = std::make_shared<Snapshot>();
    std::uint64_t total = 0;
    for (const auto& d : domains) {
        auto& m = metrics_.domain(d.name);
        Window& w = windows_[d.name];
        const broker::DomainCounts* nats = report.find("nats", d.name);
        const broker::DomainCounts* rabbit = report.find("rabbitmq", d.name);
        if (nats != nullptr) {
            for (std::size_t p = 0; p < nats->depth.size(); ++p)
                m.queue_depth[p]->Set(static_cast<double>(nats->depth[p]));
            if (nats->dead_letters) m.dead_letter_depth->Set(static_cast<double>(*nats->dead_letters));
            // The oldest item's age needs NATS and its streams; otherwise the last value stays.
            if (nats->oldest_unix_ms) {
                const auto& oldest = *nats->oldest_unix_ms;
                w.oldest_item_age_s =
                    oldest ? std::max<double>(0, static_cast<double>(nowUnixMs() - *oldest) / 1000.0) : 0.0;
                m.oldest_item_age->Set(w.oldest_item_age_s);
            }
            if (nats->swept > 0) {
                m.acked_swept->Increment(static_cast<double>(nats->swept));
                spdlog::warn("domain={}: removed {} acknowledged item(s) nats-server still held in the work stream "
                             "(left by a server crash; never deliverable, they only took stream space)",
                             d.name, nats->swept);
            }
        }
        if (rabbit != nullptr) {
            m.queue_depth_rabbitmq->Set(static_cast<double>(rabbit->total()));
            if (rabbit->dead_letters) m.dead_letter_depth_rabbitmq->Set(static_cast<double>(*rabbit->dead_letters));
        }
        // A dead-letter count a broker did not give now keeps its last value.
        std::uint64_t dead = 0;
        bool dead_known = false;
        for (const auto* c : {nats, rabbit})
            if (c != nullptr && c->dead_letters) {
                dead += *c->dead_letters;
                dead_known = true;
            }
        if (dead_known) {
            if (dead > w.dead_letters)
                spdlog::warn("dead-letter queue of domain={} grew to {} (kanbanctl dlq list {})", d.name, dead, d.name);
            w.dead_letters = dead;
        }

        // A broker that did not answer counts as empty.
        const std::uint64_t depth = report.depth(d.name);
        total += depth;
        snap->domains[d.name] = {depth, w.oldest_item_age_s, w.dead_letters};
        if (!d.pool) continue;
        if (const std::size_t pending = d.pool->deadLettersPending(); pending > 0)
            spdlog::warn("domain={}: {} dead letter(s) refused by the dead-letter queue (full? see "
                         "kanban_dead_letter_failures_total); they stay in the work queue and are offered again "
                         "without running their handlers",
                         d.name, pending);
        w.samples.push_back(depth);
        while (w.samples.size() > window) w.samples.pop_front();
        double avg = 0;
        for (auto v : w.samples) avg += static_cast<double>(v);
        avg /= static_cast<double>(w.samples.size());
        const config::DomainConfig* dc = cfg->findDomain(d.name);
        const config::WorkersConfig& limits = dc != nullptr ? dc->workers : cfg->workers;  // its own min/max
        auto wanted = static_cast<std::size_t>(targetWorkers(avg, limits.min, limits.max));
        // More workers than slots would only wait for one.
        if (dc != nullptr && dc->max_in_flight > 0) wanted = std::min(wanted, static_cast<std::size_t>(dc->max_in_flight));
        const auto target = std::min(wanted,
                                     d.pool->capacity());
        if (target != d.pool->target()) {
            spdlog::info("coordinator: domain={} workers {} -> {} (average depth {:.1f} over {} samples)", d.name,
                         d.pool->target(), target, avg, w.samples.size());
            d.pool->setTarget(target);
        }
    }
    // Domains no longer configured leave the windows.
    std::erase_if(windows_, [&](const auto& kv) { return snap->domains.count(kv.first) == 0; });
    total_samples_.push_back(total);
    while (total_samples_.size() > window) total_samples_.pop_front();
    snap->depth_samples = total_samples_;
    snap->orphaned = orphaned_;
    {
        std::lock_guard lock(mu_);
        snapshot_ = std::move(snap);
    }
    if (on_tick_) on_tick_();
}

// Items on a subject no configured domain consumes stay in the stream
// (nothing is lost) and are reported: a gauge, and a log line whenever the
// picture changes. A configured domain whose plugin failed is not
// orphaned: its items wait for the fix.
void Coordinator::reportOrphans(const std::map<std::string, std::uint64_t>& unclaimed) {
    std::map<std::string, std::uint64_t> orphaned;
    std::uint64_t total = 0;
    for (const auto& [subject, n] : unclaimed)
        if (n > 0) {
            orphaned[subject] = n;
            total += n;
        }
    orphaned_ = total;
    metrics_.setOrphanedItems(static_cast<double>(total));
    if (orphaned == orphans_logged_) return;
    for (const auto& [subject, n] : orphaned)
        spdlog::warn("orphaned items: {} on {}; no configured domain consumes it (they stay in the stream)", n,
                     subject);
    if (orphaned.empty()) spdlog::info("no orphaned items left");
    orphans_logged_ = std::move(orphaned);
}

}  // namespace kanban::host::coordinator
