// The scheduler's pure parts: tick times every host agrees on, the ticks
// kept under backpressure, and jobs from the admin API's JSON.
#include "scheduler/scheduler.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kanban::host::scheduler {
namespace {

using ::testing::HasSubstr;

config::ScheduleConfig every(std::int64_t ms) {
    config::ScheduleConfig j;
    j.name = "j";
    j.domain = "a";
    j.every_ms = ms;
    return j;
}

TEST(SchedulerTicks, EveryMsTicksAreEpochMultiplesStrictlyAfter) {
    EXPECT_EQ(nextTick(every(200), 1'000'000'000'000), 1'000'000'000'200);
    EXPECT_EQ(nextTick(every(200), 1'000'000'000'199), 1'000'000'000'200);
    EXPECT_EQ(nextTick(every(300'000), 1'700'000'000'000), 1'700'000'100'000);  // two hosts compute the same instant
}

TEST(SchedulerTicks, CronTicksAreMatchingMinutesInMs) {
    config::ScheduleConfig j = every(1);
    j.every_ms.reset();
    j.cron = "*/15 * * * *";
    // 2026-11-29T13:07:30Z -> 13:15:00Z
    EXPECT_EQ(nextTick(j, 1'795'957'650'000), 1'795'958'100'000);
    j.cron = "0 0 30 2 *";
    EXPECT_EQ(nextTick(j, 1'795'957'650'000), std::nullopt);
}

TEST(SchedulerTicks, BackpressureKeepsOneTickInFourTheSameOnEveryHost) {
    const auto j = every(100);
    int kept = 0;
    for (std::int64_t t = 0; t < 100 * 400; t += 100) kept += keptUnderBackpressure(j, t) ? 1 : 0;
    EXPECT_EQ(kept, 100);
    EXPECT_TRUE(keptUnderBackpressure(j, 400));
    EXPECT_FALSE(keptUnderBackpressure(j, 500));
}

TEST(SchedulerTicks, TickIdsNameTheJobAndTheInstant) { EXPECT_EQ(tickId("health", 1'700'000'000'000), "sched:health:1700000000000"); }

TEST(SchedulerJobs, FromJsonChecksEveryField) {
    config::Config cfg;
    config::DomainConfig orders;
    orders.name = orders.plugin = "orders";
    orders.plugin_path = "/x/orders.so";
    orders.timeout_ms = 1000;
    cfg.domains.push_back(orders);
    auto ok = jobFromJson({{"name", "n1"}, {"domain", "orders"}, {"every_ms", 200}, {"priority", "high"}, {"deadline_ms", 50}},
                          cfg);
    ASSERT_TRUE(ok) << ok.message();
    EXPECT_EQ(ok->every_ms, 200);
    EXPECT_EQ(ok->priority, Priority::high);
    EXPECT_EQ(ok->payload, "{}");
    EXPECT_EQ(jobToJson(*ok)["deadline_ms"], 50);

    const std::pair<nlohmann::json, const char*> bad[] = {
        {nlohmann::json::array(), "JSON object"},
        {{{"domain", "orders"}, {"every_ms", 1}}, "\"name\" is required"},
        {{{"name", "a b"}, {"domain", "orders"}, {"every_ms", 1}}, "[A-Za-z0-9_-]+"},
        {{{"name", "n"}, {"domain", "nosuch"}, {"every_ms", 1}}, "unknown domain \"nosuch\""},
        {{{"name", "n"}, {"domain", "orders"}}, "one of \"every_ms\" or \"cron\" is required"},
        {{{"name", "n"}, {"domain", "orders"}, {"every_ms", 1}, {"cron", "* * * * *"}}, "not both"},
        {{{"name", "n"}, {"domain", "orders"}, {"every_ms", 0}}, "positive integer"},
        {{{"name", "n"}, {"domain", "orders"}, {"cron", "61 * * * *"}}, "minute field '61'"},
        {{{"name", "n"}, {"domain", "orders"}, {"every_ms", 1}, {"priority", "urgent"}}, "high, normal, low"},
        {{{"name", "n"}, {"domain", "orders"}, {"every_ms", 1}, {"evry_ms", 1}}, "unknown key \"evry_ms\""},
    };
    for (const auto& [j, message] : bad) {
        auto r = jobFromJson(j, cfg);
        ASSERT_FALSE(r) << j.dump();
        EXPECT_THAT(r.message(), HasSubstr(message)) << j.dump();
    }
}

}  // namespace
}  // namespace kanban::host::scheduler
