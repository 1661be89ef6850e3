#include "reload/reload_plan.hpp"

namespace kanban::host::reload {

Plan makePlan(const config::Config& running, const config::Config& loaded) {
    Plan plan;
    plan.next = loaded;
    config::Config& next = plan.next;
    if (!(running.nats == next.nats)) {
        plan.restart_only.push_back("[nats]");
        next.nats = running.nats;
    }
    if (!(running.rabbitmq == next.rabbitmq)) {
        plan.restart_only.push_back("[rabbitmq]");
        next.rabbitmq = running.rabbitmq;
    }
    if (!(running.admin == next.admin)) {
        plan.restart_only.push_back("[admin]");
        next.admin = running.admin;
    }
    if (running.log_format != next.log_format) {  // runners inherit it at their start
        plan.restart_only.push_back("[log] format");
        next.log_format = running.log_format;
    }
    if (running.state_dir != next.state_dir) {
        plan.restart_only.push_back("[state]");
        next.state_dir = running.state_dir;
    }
    const bool pool_settings = !(running.workers == next.workers) || !(running.retry == next.retry) ||
                               !(running.circuit_breaker == next.circuit_breaker);
    for (const auto& d : next.domains) {
        const config::DomainConfig* before = running.findDomain(d.name);
        if (before == nullptr)
            plan.added.push_back(d.name);
        else if (pool_settings || !(*before == d))
            plan.new_settings.push_back(d.name);
    }
    for (const auto& d : running.domains)
        if (next.findDomain(d.name) == nullptr) plan.removed.push_back(d.name);
    plan.log_level_changed = running.log_level != next.log_level;
    return plan;
}

}  // namespace kanban::host::reload
