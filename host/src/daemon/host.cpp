#include "daemon/host.hpp"
#include "daemon/exit_guard.hpp"
#include "log/json_formatter.hpp"

#include <nats/nats.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <csignal>
#include <iostream>
#include <condition_variable>
#include <memory>
#include <thread>

#include "admin/admin_server.hpp"
#include "admin/admin_service.hpp"
#include "broker/broker_options.hpp"
#include "broker/failover.hpp"
#include "broker/jetstream.hpp"
#include "broker/jetstream_leases.hpp"
#include "broker/jetstream_rates.hpp"
#include "broker/jetstream_pause_store.hpp"
#include "broker/jetstream_schedule_store.hpp"
#include "broker/rabbitmq.hpp"
#include "config/config.hpp"
#include "coordinator/coordinator.hpp"
#include "metrics/metrics.hpp"
#include "pause/domain_pauses.hpp"
#include "plugin/registry.hpp"
#include "reload/reload_plan.hpp"
#include "scheduler/scheduler.hpp"
#include "scheduler/stored_jobs.hpp"
#include "version.hpp"
#include "worker/domain_table.hpp"

namespace kanban::host::daemon {
namespace {

// Added to the longest handler timeout in the EXTEND_TIMEOUT_USEC sent with
// STOPPING=1: time to hand unstarted items back and close the connections.
constexpr std::int64_t kStopMarginMs = 15000;
// A handler still running this long after its domain's timeout_ms, once a
// stop or a reload asked its worker to stop, is abandoned (within the margin).
constexpr std::int64_t kAbandonGraceMs = 5000;
// A reload running longer than this makes /readyz answer 503 (a plugin's
// constructor that hangs, say).
constexpr auto kReloadStuckAfter = std::chrono::seconds(5);
// How often the watchdog looks for handlers past their deadline.
constexpr auto kWatchEvery = std::chrono::milliseconds(200);

// Pools with an abandoned handler thread: never destroyed (the thread may
// still return into them); the process ends with them.
void keepForever(std::shared_ptr<worker::DomainWorkers> pool) {
    static auto* kept = new std::vector<std::shared_ptr<worker::DomainWorkers>>;  // never freed, on purpose
    static std::mutex mu;
    std::lock_guard lock(mu);
    kept->push_back(std::move(pool));
}

double nowSeconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

template <typename C, typename T>
bool contains(const C& c, const T& v) {
    return std::find(c.begin(), c.end(), v) != c.end();
}

}  // namespace

sigset_t handledSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

void setLogLevel(const std::string& level) { spdlog::set_level(log::levelFrom(level)); }

// The scheduler publishes through the same failover path as everything
// else; its canaries are judged by the idempotency record (this host's,
// then the shared bucket) and by this host's workers as they settle them.
scheduler::Scheduler::Hooks Host::schedulerHooks() {
    scheduler::Scheduler::Hooks hooks;
    hooks.publish = [this](const broker::PublishRequest& req) {
        auto ack = brokers_.publish(req);
        if (ack && !ack->duplicate) metrics_.publishedInc(req.domain);
        if (!ack) metrics_.publishErrorInc(brokers_.backendName(), "schedule");
        return ack;
    };
    hooks.depth = [this](const std::string& domain) { return coordinator_.lastDepth(domain); };
    hooks.done = [this](const std::string& id) {
        if (done_.contains(id)) return true;
        if (!sched_store_) {
            auto opened = brokers_.openDoneStore();
            if (!opened) return false;
            sched_store_ = std::move(*opened);
        }
        auto known = sched_store_->lookup({id});
        return known && !known->empty() && known->front();
    };
    hooks.draining = [this] { return service_.draining(); };
    hooks.on_published = [this](const std::string& job) { metrics_.scheduledPublishedInc(job); };
    hooks.on_skipped = [this](const std::string& job, const std::string& reason, std::uint64_t n) {
        metrics_.scheduledSkippedInc(job, reason, static_cast<double>(n));
    };
    hooks.on_canary = [this](const std::string& job, const std::string& outcome) { metrics_.canaryInc(job, outcome); };
    hooks.on_added = [this](const std::string& job) { metrics_.job(job); };
    return hooks;
}

std::shared_ptr<tracing::Tracer> Host::makeTracer(const config::Config& cfg, metrics::Metrics& metrics) {
    if (!cfg.tracing.enabled()) return nullptr;
    std::string error;
    auto tracer = tracing::Tracer::create(
        cfg.tracing, KANBAN_VERSION, [&metrics](std::uint64_t n) { metrics.spansDropped(static_cast<double>(n)); },
        [&metrics](std::uint64_t n) { metrics.spansExported(static_cast<double>(n)); }, error);
    if (!tracer) spdlog::error("tracing: {}; running without tracing", error);
    else
        spdlog::info("tracing: a span per handler attempt to {} (sample_ratio {})", cfg.tracing.otlp_endpoint,
                     cfg.tracing.sample_ratio);
    return tracer;
}

// The domain's own policies: the global tables with its overrides (config).
worker::WorkerSettings Host::workerSettings(const config::DomainConfig& d, const config::Config& /*c*/) {
    return worker::WorkerSettings{
        .domain = d,
        .workers = d.workers,
        .retry = d.retry,
        .breaker = d.circuit_breaker,
        .on_scheduled_settled = [this](const std::string& id, bool ok) { scheduler_.settled(id, ok); },
        .leases = leases_,
        .rates = rates_,
        // Follow-ups go out like any publish (NATS, or RabbitMQ when NATS is down).
        .publish =
            [this](const broker::PublishRequest& req) {
                auto ack = brokers_.publish(req);
                if (ack && !ack->duplicate) metrics_.publishedInc(req.domain);
                if (!ack) metrics_.publishErrorInc(brokers_.backendName(), "follow_up");
                return ack;
            },
        // The configuration of the moment: a domain added by a reload is known at once.
        .known_domain = [this](std::string_view name) { return config()->findDomain(name) != nullptr; },
        .tracer = tracer_};
}

std::vector<coordinator::Domain> Host::coordinated() const {
    std::vector<coordinator::Domain> out;
    for (auto& e : domains_.snapshot()) out.push_back({e.name, e.pool});
    return out;
}

void Host::startDomain(const config::DomainConfig& d, const config::Config& c, plugin::Registry::Generation g) {
    const auto& lib = *g.handler;
    spdlog::info("plugin loaded domain={} plugin={} version={} path={} isolation={}", d.name, lib.name, lib.version,
                 d.plugin_path, lib.isolated() ? "process" : "thread");
    metrics_.setPluginInfo(d.name, lib.name, lib.version);
    std::unique_ptr<worker::InflightJournal> journal;
    if (state_dir_ != nullptr) {
        auto opened = worker::InflightJournal::open(*state_dir_, d.name, static_cast<std::size_t>(d.workers.max));
        if (opened)
            journal = std::move(*opened);
        else
            spdlog::warn("domain={}: {}; a crash in its handlers will not be charged to the item", d.name, opened.message());
    }
    auto pool = std::make_shared<worker::DomainWorkers>(workerSettings(d, c), g.handler, brokers_, done_, ledger_,
                                                        metrics_.domain(d.name), std::move(journal));
    pool->setPaused(pauses_.paused(d.name));
    pool->start(static_cast<std::size_t>(d.workers.min));
    domains_.put({d.name, pool, lib.name, lib.version, ""});
    pool->setPaused(pauses_.paused(d.name));  // a pause that came meanwhile found no pool to apply to
    registry_.set(d.name, std::move(g));
}

void Host::recoverInflight() {
    if (state_dir_ == nullptr) return;
    const auto found = state_dir_->recover();
    if (found.empty()) return;
    std::unique_ptr<broker::DoneStore> store;
    if (auto opened = brokers_.openDoneStore()) store = std::move(*opened);
    for (const auto& item : found) {
        broker::AttemptRecord record{item.attempt, false, item.abandoned ? "retries_exhausted" : "handler_crashed",
                                     item.abandoned ? "timeout: the handler was still running past its timeout when "
                                                      "kanband stopped, and was abandoned"
                                                    : "handler_crashed: kanband ended while the handler ran"};
        ledger_.put(item.id, record);
        Status shared = store ? store->recordAttempt(item.id, record) : Status(Error{"no store"});
        spdlog::warn("domain={} id={}: it was in a handler (attempt {}) when the previous kanband process {}; "
                     "charged that attempt{}",
                     item.domain, item.id, item.attempt, item.abandoned ? "abandoned it" : "ended",
                     shared ? "" : " (this host only: " + shared.message() + ")");
    }
}

void Host::watchdog(std::stop_token stop) {
    std::mutex mu;
    std::condition_variable_any cv;
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, stop, kWatchEvery, [&] { return stop.stop_requested(); })) {
        const auto now = std::chrono::steady_clock::now();
        for (const auto& e : domains_.snapshot())
            if (e.pool) e.pool->watch(now);
    }
}

std::string Host::controlTrouble() const {
    const std::int64_t started = reload_started_ns_.load();
    if (started == 0) return "";
    const auto running = std::chrono::steady_clock::now() - std::chrono::steady_clock::time_point(
                                                                std::chrono::steady_clock::duration(started));
    if (running < kReloadStuckAfter) return "";
    return "a reload has been running for " +
           std::to_string(std::chrono::duration_cast<std::chrono::seconds>(running).count()) +
           " s (a plugin's constructor or destructor that does not return?)";
}

void Host::retire(std::shared_ptr<worker::DomainWorkers> pool, std::int64_t timeout_ms) {
    pool->requestStop();  // unstarted items go back to the broker; the ones in a handler finish
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms + kAbandonGraceMs);
    std::lock_guard lock(retiring_mu_);
    retiring_.emplace_back([this, pool = std::move(pool), deadline]() mutable {
        if (pool->joinUntil(deadline)) {
            spdlog::info("domain removed domain={}: its workers finished; its queue stays in the broker", pool->name());
            return;
        }
        abandoned_any_ = true;
        spdlog::error("domain removed domain={}: a handler did not return within timeout_ms + {} ms; abandoned",
                      pool->name(), kAbandonGraceMs);
        keepForever(std::move(pool));
    });
}

Status Host::start() {
    const auto cfg = config();
    if (Status s = admin_.start(cfg->admin.host, cfg->admin.port); !s) return s;
    recoverInflight();
    // Paused domains stay paused across a restart: known before any pull.
    if (!pauses_.sync())
        spdlog::warn("the paused domains could not be read from NATS; every domain pulls until they can be");
    // Jidoka: a domain whose plugin cannot be loaded or created does not
    // start (its items wait in the queue); the other domains run.
    for (const auto& d : cfg->domains) {
        auto file = plugin::PluginFile::of(d);  // before the load: a file replaced meanwhile is reloaded later
        auto handler = plugin::loadDomainHandler(d, cfg->log_level);
        if (!handler) {
            spdlog::error("domain not started domain={}: {}", d.name, handler.message());
            domains_.put({d.name, nullptr, "", "", handler.message()});
            continue;
        }
        startDomain(d, *cfg, {std::move(*handler), std::move(file)});
    }
    sd_notify(0, "READY=1\nSTATUS=running");
    spdlog::info("kanband ready admin={}:{} workers_per_domain={}", cfg->admin.host, admin_.port(), cfg->workers.min);
    metrics_.configLoaded(nowSeconds());
    scheduler_.start();
    coordinator_.start();
    delayed_mover_.start();
    watchdog_ = std::jthread([this](std::stop_token st) { watchdog(st); });
    return Ok{};
}

void Host::refuseReload(const std::string& why) {
    spdlog::error("reload refused, the running configuration stays: {}", why);
    metrics_.reloaded(false, nowSeconds());
    sd_notify(0, "READY=1\nSTATUS=running (last reload refused)");
}

// SIGHUP: validate everything first and change nothing on any failure;
// then apply the plan.
void Host::reload() {
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               static_cast<unsigned long long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                   std::chrono::steady_clock::now().time_since_epoch())
                                                   .count()));
    spdlog::info("SIGHUP received: reloading {}", path_);
    auto loaded = config::loadConfigFile(path_);
    if (!loaded) return refuseReload(loaded.message());
    const auto running = config();
    reload::Plan plan = reload::makePlan(*running, *loaded);
    // Shadow-build every new or changed domain's generation: all or nothing.
    auto fresh = registry_.shadowBuild(plan.next);
    if (!fresh) return refuseReload(fresh.message());

    std::size_t swapped = 0, added = 0, removed = 0;
    for (const auto& d : plan.next.domains) {
        auto pool = domains_.pool(d.name);
        auto f = fresh->find(d.name);
        if (!pool) {
            // New, or configured but not started (its plugin had failed): it has a fresh generation now.
            if (f == fresh->end()) continue;
            startDomain(d, plan.next, std::move(f->second));
            spdlog::info("domain added domain={}", d.name);
            ++added;
            continue;
        }
        if (contains(plan.new_settings, d.name)) pool->updateSettings(workerSettings(d, plan.next));
        if (f == fresh->end()) continue;
        const auto old = pool->handler();
        const auto& lib = *f->second.handler;
        pool->swapHandler(f->second.handler);
        domains_.setPlugin(d.name, lib.name, lib.version);
        metrics_.setPluginInfo(d.name, lib.name, lib.version);
        registry_.set(d.name, std::move(f->second));
        scheduler_.recanary(d.name);
        ++swapped;
        spdlog::info("plugin swapped domain={} plugin={} version {} -> {}; items in a handler finish on the old one",
                     d.name, lib.name, old->version, lib.version);
    }
    {
        std::lock_guard lock(cfg_mu_);
        cfg_ = std::make_shared<const config::Config>(plan.next);
    }
    scheduler_.reconfigure(plan.next);
    coordinator_.reconfigure(plan.next);
    for (const auto& name : plan.removed) {
        auto pool = domains_.pool(name);
        const config::DomainConfig* was = running->findDomain(name);
        domains_.erase(name);
        registry_.erase(name);
        if (!pool) continue;
        retire(std::move(pool), was != nullptr ? was->timeout_ms : 0);  // never waits here
        ++removed;
    }
    if (plan.log_level_changed) setLogLevel(plan.next.log_level);
    for (const auto& section : plan.restart_only) spdlog::warn("reload: {} needs a restart to take effect", section);
    metrics_.reloaded(true, nowSeconds());
    guardExit();  // after the new plugins' static objects
    spdlog::info("reload done: {} plugin generation(s) swapped, {} domain(s) added, {} removed", swapped, added,
                 removed);
    sd_notify(0, "READY=1\nSTATUS=running");
}

void Host::serve() {
    const sigset_t set = handledSignals();
    // Reloads run on their own thread, one at a time, so that a reload
    // stuck in plugin code never keeps SIGTERM from being handled. A
    // SIGHUP during a reload runs one more reload after it.
    std::mutex mu;
    std::condition_variable cv;
    bool wanted = false, quit = false;
    std::thread reloader([&] {
        std::unique_lock lock(mu);
        for (;;) {
            cv.wait(lock, [&] { return wanted || quit; });
            if (quit) return;
            wanted = false;
            lock.unlock();
            reload_started_ns_ = std::chrono::steady_clock::now().time_since_epoch().count();
            reload();
            reload_started_ns_ = 0;
            lock.lock();
        }
    });
    for (;;) {
        const int sig = sigwaitinfo(&set, nullptr);
        if (sig < 0) continue;  // EINTR
        if (sig == SIGHUP) {
            {
                std::lock_guard lock(mu);
                wanted = true;
            }
            cv.notify_one();
            continue;
        }
        spdlog::info("{} received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    {
        std::lock_guard lock(mu);
        quit = true;
    }
    cv.notify_one();
    if (reload_started_ns_.load() == 0) {
        reloader.join();
        return;
    }
    // A reload is running: wait for it a while, then leave it (the stop
    // then ends the process without destructors).
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kAbandonGraceMs);
    while (reload_started_ns_.load() != 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (reload_started_ns_.load() == 0) {
        reloader.join();
        return;
    }
    spdlog::error("the running reload did not finish within {} ms of the stop; abandoned", kAbandonGraceMs);
    abandoned_any_ = true;
    reloader.detach();
}

void Host::stop() {
    // systemd's TimeoutStopSec is a floor: the drain may take the longest
    // handler timeout of the running configuration, plus a margin to hand
    // unstarted items back and close the connections.
    std::int64_t longest_ms = 0;
    for (const auto& d : config()->domains) longest_ms = std::max(longest_ms, d.timeout_ms);
    sd_notifyf(
        0,
        "STOPPING=1\nSTATUS=draining: handlers finish, unstarted items go back to the broker\nEXTEND_TIMEOUT_USEC=%llu",
        static_cast<unsigned long long>(longest_ms + kStopMarginMs) * 1000ULL);
    coordinator_.stop();  // no more scaling, no more schedule syncs
    scheduler_.stop();    // no new work
    delayed_mover_.stop();  // a move under way finishes
    watchdog_ = {};
    sched_store_.reset();
    const auto entries = domains_.snapshot();
    const auto stop_start = std::chrono::steady_clock::now();
    for (const auto& e : entries)  // all domains stop pulling at once; their handlers are asked to stop
        if (e.pool) e.pool->requestStop(/*cancel_running=*/true);
    {
        std::lock_guard lock(retiring_mu_);  // removed domains' pools: bounded too
        for (auto& t : retiring_) t.join();
        retiring_.clear();
    }
    const auto cfg = config();
    for (const auto& e : entries) {
        if (!e.pool) continue;
        const config::DomainConfig* d = cfg->findDomain(e.name);
        const auto deadline = stop_start + std::chrono::milliseconds((d != nullptr ? d->timeout_ms : 0) + kAbandonGraceMs);
        if (!e.pool->joinUntil(deadline)) {
            abandoned_any_ = true;
            keepForever(e.pool);
        }
        const auto& m = e.pool->metrics();
        double pulled = 0, dead = 0;
        for (auto* c : m.pulled) pulled += c->Value();
        for (auto* c : m.dead_lettered) dead += c->Value();
        spdlog::info(
            "domain stopped domain={} pulled={} ok={} duplicates={} retried={} failed={} timed_out={} "
            "dead_lettered={} nacked={}",
            e.name, pulled, m.processedValue(metrics::Outcome::ok), m.duplicates->Value(),
            m.processedValue(metrics::Outcome::retry), m.processedValue(metrics::Outcome::fail),
            m.processedValue(metrics::Outcome::timeout), dead, m.nacked->Value());
    }
    admin_.stop();                                         // before the pools go: /health reads them
    for (const auto& e : entries) domains_.erase(e.name);  // the handler instances go with their pools
}

}  // namespace kanban::host::daemon
