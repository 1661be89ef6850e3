#include "daemon/daemon.hpp"

#include "admin/admin_server.hpp"
#include "broker/jetstream.hpp"
#include "config/config.hpp"
#include "plugin/plugin.hpp"
#include "worker/domain_workers.hpp"

#include <nats/nats.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <vector>

namespace kanban::host::daemon {
namespace {

sigset_t handledSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

void setupLogging(const std::string& level) {
    auto logger = spdlog::stderr_color_mt("kanband");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::from_str(level == "warning" ? "warn" : level));
}

struct LoadedDomain {
    config::DomainConfig config;
    std::shared_ptr<const plugin::Instance> handler;
};

Result<std::shared_ptr<const plugin::Instance>> loadHandler(const config::DomainConfig& d) {
    auto lib = plugin::Library::load(d.plugin_path);
    if (!lib) return lib.error();
    return plugin::Instance::create(std::move(*lib), d.settings_json);
}

// Items on a subject that no configured domain consumes stay in the stream
// (nothing is lost, DESIGN §5) and are reported: logged whenever the
// picture changes. A configured domain whose plugin failed is not orphaned:
// its items wait for the fix.
class OrphanWatch {
public:
    explicit OrphanWatch(const config::Config& cfg) {
        for (const auto& d : cfg.domains) domains_.insert(d.name);
    }

    void check(broker::JetStream& js) {
        if (!js.connected()) return;  // a JS API call would block until its timeout
        auto counts = js.subjectCounts();
        if (!counts) {
            spdlog::debug("orphan check skipped: {}", counts.message());
            return;
        }
        std::map<std::string, std::uint64_t> orphaned;
        for (const auto& [subject, n] : *counts)
            if (domains_.count(subject.substr(subject.rfind('.') + 1)) == 0) orphaned[subject] = n;
        if (orphaned == last_) return;
        for (const auto& [subject, n] : orphaned)
            spdlog::warn("orphaned items: {} on {}; no configured domain consumes it (they stay in the stream)", n, subject);
        if (orphaned.empty()) spdlog::info("no orphaned items left");
        last_ = std::move(orphaned);
    }

private:
    std::set<std::string> domains_;
    std::map<std::string, std::uint64_t> last_;
};

}  // namespace

void blockSignals() {
    sigset_t set = handledSignals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int checkConfig(const std::string& path) {
    auto cfg = config::loadConfigFile(path);
    if (!cfg) {
        std::cerr << cfg.message() << "\n";
        return 1;
    }
    int problems = 0;
    for (const auto& d : cfg->domains) {
        auto handler = loadHandler(d);
        if (!handler) {
            std::cerr << path << ": domain \"" << d.name << "\": " << handler.message() << "\n";
            ++problems;
        }
    }
    if (problems != 0) return 1;
    std::cout << path << ": OK (" << cfg->domains.size() << " domain" << (cfg->domains.size() == 1 ? "" : "s")
              << ", " << cfg->schedules.size() << " schedule" << (cfg->schedules.size() == 1 ? "" : "s") << ")\n";
    return 0;
}

int run(const std::string& path) {
    auto loaded = config::loadConfigFile(path);
    if (!loaded) {
        std::cerr << loaded.message() << "\n";
        return 1;
    }
    const config::Config cfg = std::move(*loaded);
    setupLogging(cfg.log_level);
    spdlog::info("kanband starting config={} domains={}", path, cfg.domains.size());

    // Jidoka: a domain whose plugin cannot be loaded or created does not
    // start (its items wait in the queue); the other domains run.
    std::vector<LoadedDomain> domains;
    for (const auto& d : cfg.domains) {
        auto handler = loadHandler(d);
        if (!handler) {
            spdlog::error("domain not started domain={}: {}", d.name, handler.message());
            continue;
        }
        spdlog::info("plugin loaded domain={} plugin={} version={} path={}", d.name, (*handler)->library().name(),
                     (*handler)->library().version(), d.plugin_path);
        domains.push_back({d, std::move(*handler)});
    }

    broker::JetStreamOptions jo;
    jo.servers = cfg.nats.servers;
    jo.stream = cfg.nats.stream;
    jo.replicas = static_cast<int>(cfg.nats.replicas);
    jo.max_msgs = cfg.nats.max_msgs;
    jo.max_bytes = cfg.nats.max_bytes;
    auto js = broker::JetStream::connect(jo);
    if (!js) {
        spdlog::error("{}", js.message());
        return 1;
    }
    std::unique_ptr<broker::JetStream> queue = std::move(*js);

    admin::AdminServer admin([&queue] { return queue->healthy(); });
    if (Status s = admin.start(cfg.admin.host, cfg.admin.port); !s) {
        spdlog::error("{}", s.message());
        return 1;
    }

    worker::LocalDoneRecord done;
    std::vector<std::unique_ptr<worker::DomainWorkers>> pools;
    for (auto& d : domains) {
        worker::WorkerSettings ws{d.config, cfg.workers, cfg.retry};
        auto pool = std::make_unique<worker::DomainWorkers>(std::move(ws), d.handler, *queue, done);
        pool->start(static_cast<std::size_t>(cfg.workers.min));
        pools.push_back(std::move(pool));
    }
    sd_notify(0, "READY=1\nSTATUS=running");
    spdlog::info("kanband ready admin={}:{} workers_per_domain={}", cfg.admin.host, admin.port(), cfg.workers.min);

    OrphanWatch orphans(cfg);
    orphans.check(*queue);
    const sigset_t set = handledSignals();
    const auto interval = std::chrono::milliseconds(cfg.coordinator.health_interval_ms);
    for (;;) {
        timespec timeout{static_cast<time_t>(interval.count() / 1000), static_cast<long>(interval.count() % 1000) * 1'000'000};
        const int sig = sigtimedwait(&set, nullptr, &timeout);
        if (sig < 0) {
            if (errno == EAGAIN) orphans.check(*queue);
            continue;
        }
        if (sig == SIGHUP) {
            spdlog::warn("SIGHUP received: configuration reload is not supported yet; restart to apply changes");
            continue;
        }
        spdlog::info("{} received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }

    sd_notify(0, "STOPPING=1");
    for (auto& p : pools) p->requestStop();  // all domains stop pulling at once
    for (auto& p : pools) {
        p->join();
        const auto& c = p->counters();
        spdlog::info("domain stopped domain={} pulled={} ok={} duplicates={} retried={} dead_lettered={} timed_out={} "
                     "released={}",
                     p->name(), c.pulled.load(), c.ok.load(), c.duplicates.load(), c.retried.load(),
                     c.dead_lettered.load(), c.timed_out.load(), c.released.load());
    }
    pools.clear();
    admin.stop();
    queue.reset();
    domains.clear();  // destroy handler instances after every worker joined
    nats_CloseAndWait(2000);
    spdlog::info("kanband stopped");
    return 0;
}

}  // namespace kanban::host::daemon
