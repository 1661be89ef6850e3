// The scheduler end to end (DESIGN §4 [[schedule]], §5; the spec's test 10):
// rate, one publication per tick across hosts, the canary, backpressure,
// runtime jobs that survive a restart, and kanbanctl schedule.
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>
#include <map>
#include <set>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

class Scheduler : public DaemonTest {
protected:
    static std::string job(const std::string& name, const std::string& domain, std::int64_t every_ms,
                           const std::string& payload = "tick") {
        return "[[schedule]]\nname = \"" + name + "\"\ndomain = \"" + domain + "\"\nevery_ms = " + std::to_string(every_ms) +
               "\npayload = \"" + payload + "\"\n";
    }

    static std::optional<nlohmann::json> schedule(Kanband& kd, const std::string& name) {
        auto r = kd.http("GET", "/schedules");
        if (r.status != 200) return std::nullopt;
        const auto body = nlohmann::json::parse(r.body);
        for (const auto& j : body["schedules"])
            if (j["name"] == name) return j;
        return std::nullopt;
    }

    static bool inState(Kanband& kd, const std::string& name, const std::string& state) {
        auto j = schedule(kd, name);
        return j && (*j)["state"] == state;
    }

    // kanband with one job on the recorder's domain "orders", once the job's
    // canary went through (nullptr if it did not).
    Kanband* startRunning(const std::string& name, std::int64_t every_ms, HostOptions o = {}) {
        o.extra_toml += job(name, "orders", every_ms);
        Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
        if (!waitFor([&] { return inState(kd, name, "running"); }, 10s)) {
            ADD_FAILURE() << "job " << name << " never ran at full rate\n" << kd.log();
            return nullptr;
        }
        return &kd;
    }

    // The tick times (epoch ms) of the scheduled items handled for `job`.
    std::vector<std::int64_t> handledTicks(const std::string& job) {
        std::vector<std::int64_t> ticks;
        const std::string prefix = "sched:" + job + ":";
        for (const auto& c : readCalls(out))
            if (c.outcome == "ok" && c.id.rfind(prefix, 0) == 0) ticks.push_back(std::stoll(c.id.substr(prefix.size())));
        return ticks;
    }
};

// Spec test 10: a job every 200 ms over 3 s publishes 15 ± 2 items, each
// with its tick's id, after a canary.
TEST_F(Scheduler, EveryTwoHundredMillisecondsOverThreeSecondsPublishesFifteen) {
    Kanband* running = startRunning("tick", 200);
    ASSERT_TRUE(running);
    Kanband& kd = *running;
    EXPECT_TRUE(kd.logHas("schedule canary published job=tick"));
    const std::int64_t from = epochMs();
    ASSERT_TRUE(waitFor([&] { return epochMs() >= from + 3000; }, 5s));  // the window itself
    const std::int64_t to = epochMs();
    ASSERT_TRUE(waitFor(
        [&] {
            const auto ticks = handledTicks("tick");
            return std::count_if(ticks.begin(), ticks.end(), [&](std::int64_t t) { return t >= to - 200; }) > 0;
        },
        5s));
    const auto ticks = handledTicks("tick");
    const auto in_window = std::count_if(ticks.begin(), ticks.end(), [&](std::int64_t t) { return t > from && t <= to; });
    std::cout << "[ measured ] " << in_window << " items in 3 s at every_ms 200\n";
    EXPECT_GE(in_window, 13);
    EXPECT_LE(in_window, 17);
    for (auto t : ticks) EXPECT_EQ(t % 200, 0) << "ticks are multiples of every_ms: every host computes the same ones";
    std::set<std::int64_t> unique(ticks.begin(), ticks.end());
    EXPECT_EQ(unique.size(), ticks.size()) << "a tick was handled twice";
    const auto metrics = kd.http("GET", "/metrics").body;
    EXPECT_GE(metric(metrics, R"(kanban_scheduled_items_published_total{job="tick"})").value_or(0), 13.0);
    EXPECT_EQ(metric(metrics, R"(kanban_schedule_canaries_total{job="tick",outcome="ok"})"), 1.0);
}

// Two hosts with the same job publish each tick once (JetStream dedup on
// the tick id), and the two hosts' published counters add up to the ticks.
TEST_F(Scheduler, TwoHostsPublishEachTickOnce) {
    HostOptions o;
    o.extra_toml = job("shared", "orders", 200);
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    Kanband a(dir, cfg, "a");
    Kanband b(dir, cfg, "b");
    ASSERT_TRUE(a.waitReady() && b.waitReady()) << a.log() << b.log();
    ASSERT_TRUE(waitFor([&] { return inState(a, "shared", "running") && inState(b, "shared", "running"); }, 10s))
        << a.log() << b.log();
    ASSERT_TRUE(waitFor([&] { return handledTicks("shared").size() >= 20; }, 10s));
    // Stop both, then count: every tick stored is handled once.
    a.proc().signal(SIGTERM);
    b.proc().signal(SIGTERM);
    const auto pa = metric(a.http("GET", "/metrics").body, R"(kanban_scheduled_items_published_total{job="shared"})");
    ASSERT_TRUE(a.proc().wait(10s) && b.proc().wait(10s));
    const auto ticks = handledTicks("shared");
    std::map<std::int64_t, int> per_tick;
    for (auto t : ticks) ++per_tick[t];
    for (const auto& [t, n] : per_tick) EXPECT_EQ(n, 1) << "tick " << t << " handled " << n << " times";
    const std::int64_t first = per_tick.begin()->first, last = per_tick.rbegin()->first;
    std::cout << "[ measured ] two hosts: " << per_tick.size() << " ticks handled once each over "
              << (last - first) / 200 + 1 << " tick slots; host a stored " << pa.value_or(-1) << "\n";
    EXPECT_GE(static_cast<double>(per_tick.size()), 0.9 * static_cast<double>((last - first) / 200 + 1))
        << "ticks went missing";
}

// A canary that is dead-lettered pauses the job: one item only, the state
// and reason in /schedules, a log line, the canary metric.
TEST_F(Scheduler, CanaryFailurePausesTheJob) {
    HostOptions o;
    o.extra_toml = job("broken", "orders", 100, "fail");
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    ASSERT_TRUE(waitFor([&] { return inState(kd, "broken", "paused"); }, 10s)) << kd.log();
    auto j = schedule(kd, "broken");
    EXPECT_THAT((*j)["reason"].get<std::string>(), HasSubstr("dead-lettered"));
    ASSERT_TRUE(waitFor([&] { return schedule(kd, "broken")->value("/skipped/paused"_json_pointer, 0) >= 5; }, 5s));
    EXPECT_EQ(readCalls(out).size(), 1u) << "only the canary may run";
    EXPECT_TRUE(kd.logHas("schedule paused job=broken"));
    EXPECT_EQ(metric(kd.http("GET", "/metrics").body, R"(kanban_schedule_canaries_total{job="broken",outcome="failed"})"),
              1.0);
}

// A canary that is never handled (the domain's plugin failed) pauses the
// job after scheduler.canary_timeout_ms.
TEST_F(Scheduler, CanaryTimeoutPausesTheJob) {
    HostOptions o;
    o.extra_toml = "[scheduler]\ncanary_timeout_ms = 500\n" + job("stuck", "orders", 100);
    // Bad settings: create() fails, the domain does not start, nothing consumes its items.
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", ""}}, o);
    ASSERT_TRUE(waitFor([&] { return inState(kd, "stuck", "paused"); }, 10s)) << kd.log();
    EXPECT_THAT(schedule(kd, "stuck")->value("reason", ""), HasSubstr("not handled within 500 ms")) << kd.log();
    EXPECT_EQ(metric(kd.http("GET", "/metrics").body, R"(kanban_schedule_canaries_total{job="stuck",outcome="timeout"})"),
              1.0);
}

// Depth above scheduler.backpressure_depth: one tick in four; back to full
// rate once the depth falls. The depth comes from items the handler keeps
// retrying while a "downstream" is down.
TEST_F(Scheduler, BackpressureReducesTheRateAndRecoveryRestoresIt) {
    HostOptions o;
    o.health_interval_ms = 100;  // depth samples
    o.max_attempts = 1000;
    o.backoff_initial_ms = 3000;
    o.backoff_max_ms = 3000;
    o.workers = 1;
    o.max_workers = 1;
    o.extra_toml = "[scheduler]\nbackpressure_depth = 3\n" + job("bp", "orders", 100);
    const std::string down = dir.file("down");
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so",
                          recorderSettings(out) + ", down_while = \"" + down + "\""}},
                        o);
    ASSERT_TRUE(waitFor([&] { return inState(kd, "bp", "running"); }, 10s)) << kd.log();
    auto published = [&] { return schedule(kd, "bp")->value("published", 0); };

    writeFile(down, "");
    ASSERT_TRUE(waitFor([&] { return schedule(kd, "bp")->value("throttled", false); }, 10s)) << kd.log();
    int before = published();
    const std::int64_t t0 = epochMs();
    ASSERT_TRUE(waitFor([&] { return epochMs() >= t0 + 2000; }, 3s));
    const int throttled_rate = published() - before;  // over 2 s at every_ms 100: 20 ticks

    ::unlink(down.c_str());
    ASSERT_TRUE(waitFor([&] { return !schedule(kd, "bp")->value("throttled", true); }, 15s)) << kd.log();
    before = published();
    const std::int64_t t1 = epochMs();
    ASSERT_TRUE(waitFor([&] { return epochMs() >= t1 + 2000; }, 3s));
    const int full_rate = published() - before;
    std::cout << "[ measured ] items published in 2 s: " << throttled_rate << " over the threshold, " << full_rate
              << " after recovery (20 ticks)\n";
    EXPECT_LE(throttled_rate, 8) << "one tick in four is about 5";
    EXPECT_GE(throttled_rate, 2);
    EXPECT_GE(full_rate, 16);
    EXPECT_GT(schedule(kd, "bp")->value("/skipped/backpressure"_json_pointer, 0), 10);
    EXPECT_TRUE(kd.logHas("depth back under backpressure_depth: full rate"));
}

// No catch-up (reliability.md F18's policy): after the process was stopped
// for 1.5 s, the ticks that passed are skipped as "missed", not published in
// a burst, and the job goes on at its rate.
TEST_F(Scheduler, APauseIsNotCaughtUp) {
    Kanband* running = startRunning("steady", 100);
    ASSERT_TRUE(running);
    Kanband& kd = *running;
    const std::int64_t stopped = epochMs();
    kd.proc().signal(SIGSTOP);
    ASSERT_TRUE(waitFor([&] { return epochMs() >= stopped + 1500; }, 3s));  // the pause itself
    const std::int64_t resumed = epochMs();
    kd.proc().signal(SIGCONT);
    ASSERT_TRUE(waitFor(
        [&] {
            const auto ticks = handledTicks("steady");
            return std::count_if(ticks.begin(), ticks.end(), [&](std::int64_t t) { return t > resumed + 300; }) > 0;
        },
        5s))
        << kd.log();
    const auto ticks = handledTicks("steady");
    const auto during = std::count_if(ticks.begin(), ticks.end(), [&](std::int64_t t) { return t > stopped + 100 && t < resumed; });
    EXPECT_EQ(during, 0) << "ticks of the pause were published afterwards";
    EXPECT_GE(schedule(kd, "steady")->value("/skipped/missed"_json_pointer, 0), 10);
    EXPECT_TRUE(kd.logHas("tick(s) missed"));
}

// Drain stops scheduled publishing (DESIGN §5): ticks are skipped, counted
// as "draining", and the queue can run dry.
TEST_F(Scheduler, DrainStopsScheduledPublishing) {
    Kanband* running = startRunning("drained", 100);
    ASSERT_TRUE(running);
    Kanband& kd = *running;
    ASSERT_EQ(kd.http("POST", "/drain").status, 202);
    ASSERT_TRUE(waitFor([&] { return schedule(kd, "drained")->value("/skipped/draining"_json_pointer, 0) >= 1; }, 5s));
    const int published = schedule(kd, "drained")->value("published", 0);
    ASSERT_TRUE(waitFor([&] { return schedule(kd, "drained")->value("/skipped/draining"_json_pointer, 0) >= 5; }, 5s));
    EXPECT_EQ(schedule(kd, "drained")->value("published", 0), published);
    EXPECT_TRUE(waitFor([&] { return nlohmann::json::parse(kd.http("GET", "/health").body)["drained"] == true; }, 10s));
}

// Runtime jobs: kanbanctl schedule add, list and cancel; the job is stored
// in NATS, so a restarted kanband runs it again (after a new canary).
TEST_F(Scheduler, RuntimeJobSurvivesARestartAndCanBeCancelled) {
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    auto ctl = [&](std::vector<std::string> args, const std::string& admin) {
        std::vector<std::string> argv{kKanbanctl, "--config", cfg, "--admin", admin, "schedule"};
        argv.insert(argv.end(), args.begin(), args.end());
        return runCommand(argv);
    };
    std::set<std::int64_t> first_run;
    {
        Kanband kd(dir, cfg, "first");
        ASSERT_TRUE(kd.waitReady()) << kd.log();
        auto bad = ctl({"add", "--name", "rt", "--domain", "orders", "--cron", "61 * * * *"}, kd.admin());
        EXPECT_EQ(bad.exit_code, 1);
        EXPECT_THAT(bad.err, HasSubstr("minute field '61'"));
        EXPECT_EQ(ctl({"add", "--name", "rt", "--domain", "orders"}, kd.admin()).exit_code, 64) << "no period";
        auto added = ctl({"add", "--name", "rt", "--domain", "orders", "--every-ms", "200", "--payload", "rt"}, kd.admin());
        ASSERT_EQ(added.exit_code, 0) << added.err;
        ASSERT_TRUE(waitFor([&] { return handledTicks("rt").size() >= 3; }, 10s)) << kd.log();
        auto list = ctl({"list"}, kd.admin());
        EXPECT_EQ(list.exit_code, 0);
        EXPECT_THAT(list.out, HasSubstr("rt"));
        EXPECT_THAT(list.out, HasSubstr("api"));
        kd.proc().signal(SIGTERM);
        ASSERT_EQ(kd.proc().wait(10s), 0);
        for (auto t : handledTicks("rt")) first_run.insert(t);
    }
    Kanband kd(dir, cfg, "second");
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    ASSERT_TRUE(waitFor([&] { return schedule(kd, "rt").has_value(); }, 10s)) << kd.log();
    EXPECT_EQ(schedule(kd, "rt")->value("source", ""), "api");
    ASSERT_TRUE(waitFor([&] { return handledTicks("rt").size() >= first_run.size() + 3; }, 10s)) << kd.log();

    auto cancelled = ctl({"cancel", "rt"}, kd.admin());
    ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
    EXPECT_FALSE(schedule(kd, "rt").has_value());
    const auto after_cancel = handledTicks("rt").size();
    const std::int64_t t0 = epochMs();
    ASSERT_TRUE(waitFor([&] { return epochMs() >= t0 + 600; }, 2s));  // three periods
    EXPECT_LE(handledTicks("rt").size(), after_cancel + 1) << "still publishing after cancel (one may be in flight)";
    auto again = ctl({"cancel", "rt"}, kd.admin());
    EXPECT_EQ(again.exit_code, 1);
    EXPECT_THAT(again.err, HasSubstr("no schedule named \"rt\""));
}

}  // namespace
}  // namespace kanban::test
