// What the admin API answers (docs/design.md §6): health, readiness, drain,
// schedules and dead letters, from the running host's parts. The transport
// (routes, tokens, limits) is AdminServer's; this class only builds replies.
// Called from the admin server's thread; every part it reads is
// thread-safe, and no broker request is made under a lock.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "admin/admin_server.hpp"
#include "broker/inspection.hpp"
#include "config/config.hpp"
#include "coordinator/coordinator.hpp"
#include "metrics/metrics.hpp"
#include "pause/domain_pauses.hpp"
#include "status/item_status.hpp"
#include "scheduler/schedule_store.hpp"
#include "scheduler/scheduler.hpp"
#include "worker/domain_table.hpp"

namespace kanban::host::admin {

class AdminService final : public AdminApi {
public:
    struct Parts {
        broker::Inspector& brokers;
        metrics::Metrics& metrics;
        const worker::DomainTable& domains;
        const coordinator::Coordinator& coordinator;
        scheduler::Scheduler& scheduler;
        scheduler::ScheduleStore& schedule_store;
        pause::DomainPauses& pauses;
        status::ItemLocator& items;
        std::function<std::shared_ptr<const config::Config>()> cfg;  // the running configuration
        // Why the control plane is not ready (a reload that takes too long), or empty.
        std::function<std::string()> control_trouble;
    };
    explicit AdminService(Parts parts) : p_(std::move(parts)) {}

    // POST /drain was called: /readyz says 503, the scheduler publishes nothing.
    bool draining() const { return draining_.load(); }

    std::string notReady() override;
    std::string metrics() override { return p_.metrics.scrape(); }
    nlohmann::json health() override;
    Reply drain() override;
    Reply cancelDrain() override;
    Reply schedules() override;
    Reply addSchedule(const nlohmann::json& body) override;
    Reply cancelSchedule(const std::string& name) override;
    Reply deadLetters(const std::string& domain, const broker::DeadLetterQuery& query) override;
    Reply replay(const std::string& domain, const broker::DeadLetterFilter& filter) override;
    Reply purge(const std::string& domain, const broker::DeadLetterFilter& filter) override;
    Reply stalled(const std::string& domain) override;
    Reply setPaused(const std::string& domain, bool paused) override;
    Reply itemStatus(const std::string& id, const std::string& domain, std::size_t max_scan) override;
    Reply logLevel() override;
    Reply setLogLevel(const std::string& level) override;

private:
    bool isConfigJob(const std::string& name) const;

    Parts p_;
    std::atomic<bool> draining_{false};
};

}  // namespace kanban::host::admin
