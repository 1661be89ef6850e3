#include "daemon/daemon.hpp"
#include "daemon/exit_guard.hpp"
#include "log/json_formatter.hpp"

#include <nats/nats.h>
#include <spdlog/sinks/stdout_color_sinks.h>
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
#include "daemon/host.hpp"

namespace kanban::host::daemon {
namespace {

// Before any thread: runner processes inherit the format from the environment.
void setupLogging(const std::string& level, const std::string& format) {
    ::setenv("KANBAN_LOG_FORMAT", format.c_str(), 1);
    log::setup("kanband", format, "%Y-%m-%dT%H:%M:%S.%e%z %l %v");
    setLogLevel(level);
}

}  // namespace

void blockSignals() {
    sigset_t set = handledSignals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int run(const std::string& path) {
    struct Orderly {  // every return from here on is kanband's own
        ~Orderly() { markOrderlyExit(); }
    } orderly;
    auto loaded = config::loadConfigFile(path);
    if (!loaded) {
        std::cerr << loaded.message() << "\n";
        return 1;
    }
    const config::Config cfg = std::move(*loaded);
    setupLogging(cfg.log_level, cfg.log_format);
    guardExit();
    spdlog::info("kanband starting version={} config={} domains={}", KANBAN_VERSION, path, cfg.domains.size());

    std::string token;
    if (!cfg.admin.token_file.empty()) {
        auto t = admin::readTokenFile(cfg.admin.token_file);
        if (!t) {
            spdlog::error("{}", t.message());
            return 1;
        }
        token = std::move(*t);
    }

    std::unique_ptr<worker::StateDir> state_dir;
    {
        std::string dir = cfg.state_dir;
        if (dir.empty()) {
            const char* sd = std::getenv("STATE_DIRECTORY");
            dir = sd != nullptr && *sd != '\0' ? std::string(sd).substr(0, std::string(sd).find(':')) : "/var/lib/tps-kanban";
        }
        auto opened = worker::StateDir::open(dir);
        if (!opened) {
            // Another kanband on the same directory would clear its journal.
            spdlog::error("{}", opened.message());
            return 1;
        }
        state_dir = std::move(*opened);
    }

    metrics::Metrics metrics(KANBAN_VERSION);
    auto js = broker::JetStream::connect(broker::jetStreamOptions(cfg, "kanband", /*keep_trying=*/true));
    if (!js) {
        spdlog::error("{}", js.message());
        return 1;
    }
    std::unique_ptr<broker::JetStream> nats = std::move(*js);
    std::unique_ptr<broker::RabbitMq> rabbit;
    if (auto ro = broker::rabbitMqOptions(cfg, "kanband")) rabbit = std::make_unique<broker::RabbitMq>(*ro);
    int rc = 0;
    {
        broker::Failover brokers(nats.get(), rabbit.get(), [&metrics](std::string_view to) {
            metrics.failoverInc();
            metrics.setActiveBackend(to);
        });
        Host host(path, cfg, metrics, brokers, *nats, token, state_dir.get());
        if (Status s = host.start(); !s) {
            spdlog::error("{}", s.message());
            rc = 1;
        } else {
            guardExit();  // after the plugins' static objects
            host.serve();
        }
        host.stop();
        if (host.abandonedAny()) {
            // A handler thread still runs plugin code and may return into
            // what destructors would free: end here, the items are back in
            // the broker and the journal says which call was abandoned.
            spdlog::warn("kanband stopped with abandoned handler threads; exiting without cleanup");
            spdlog::default_logger()->flush();
            std::_Exit(rc);
        }
    }
    // Nothing uses the connections any more: close them, then the library.
    rabbit.reset();
    nats.reset();
    nats_CloseAndWait(2000);
    spdlog::info("kanband stopped");
    return rc;
}

}  // namespace kanban::host::daemon
