// The reload plan (reload/reload_plan.hpp): the diff between the running
// configuration and the file, without plugins or brokers.
#include "reload/reload_plan.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kanban::host::reload {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

config::DomainConfig domain(const std::string& name, std::int64_t timeout_ms = 30000) {
    config::DomainConfig d;
    d.name = name;
    d.plugin_path = "/plugins/" + name + ".so";
    d.timeout_ms = timeout_ms;
    return d;
}

config::Config base() {
    config::Config c;
    c.domains = {domain("orders"), domain("mail")};
    return c;
}

TEST(ReloadPlan, AnUnchangedFileChangesNothing) {
    const Plan p = makePlan(base(), base());
    EXPECT_THAT(p.added, IsEmpty());
    EXPECT_THAT(p.removed, IsEmpty());
    EXPECT_THAT(p.new_settings, IsEmpty());
    EXPECT_THAT(p.restart_only, IsEmpty());
    EXPECT_FALSE(p.log_level_changed);
}

TEST(ReloadPlan, DomainsAddedRemovedAndChanged) {
    config::Config next = base();
    next.domains = {domain("orders", 5000), domain("billing")};
    const Plan p = makePlan(base(), next);
    EXPECT_THAT(p.added, ElementsAre("billing"));
    EXPECT_THAT(p.removed, ElementsAre("mail"));
    EXPECT_THAT(p.new_settings, ElementsAre("orders"));
}

TEST(ReloadPlan, PoolSettingsApplyToEveryRunningDomain) {
    config::Config next = base();
    next.retry.max_attempts = 2;
    EXPECT_THAT(makePlan(base(), next).new_settings, ElementsAre("orders", "mail"));
    next = base();
    next.log_level = "debug";
    EXPECT_TRUE(makePlan(base(), next).log_level_changed);
}

// A changed [nats], [rabbitmq] or [admin] is not applied: the plan keeps
// the running values, so the next reload compares against what runs and
// warns again instead of taking the unapplied values for applied.
TEST(ReloadPlan, RestartOnlySectionsKeepTheRunningValuesAndAreReportedAgain) {
    const config::Config running = base();
    config::Config file = base();
    file.nats.servers = {"nats://10.0.0.1:4222"};
    file.rabbitmq.url = "amqp://elsewhere";
    file.admin.listen = "127.0.0.1:9999";
    file.admin.port = 9999;
    file.workers.max = 7;  // applied live
    const Plan first = makePlan(running, file);
    EXPECT_THAT(first.restart_only, ElementsAre("[nats]", "[rabbitmq]", "[admin]"));
    EXPECT_EQ(first.next.nats.servers, running.nats.servers);
    EXPECT_EQ(first.next.rabbitmq.url, running.rabbitmq.url);
    EXPECT_EQ(first.next.admin.port, running.admin.port);
    EXPECT_EQ(first.next.workers.max, 7) << "live settings are applied";

    const Plan second = makePlan(first.next, file);  // the same file, reloaded again
    EXPECT_THAT(second.restart_only, ElementsAre("[nats]", "[rabbitmq]", "[admin]"));
    EXPECT_THAT(second.new_settings, IsEmpty()) << "workers.max 7 is running already";
}

}  // namespace
}  // namespace kanban::host::reload
