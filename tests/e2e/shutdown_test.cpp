// Shutdown (SIGTERM) of the real daemon: the handlers in progress are
// asked to stop, and the teardown closes the broker connections last.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>

#include "harness.hpp"

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

class Shutdown : public DaemonTest {
protected:
    // SIGTERM to exit of a kanband started on `config`, once its first
    // tick of `job` (if any) was handled.
    std::chrono::milliseconds stopTime(const std::string& config, const std::string& name, const std::string& job) {
        Kanband kd(dir, config, name);
        EXPECT_TRUE(kd.waitReady()) << kd.log();
        if (!job.empty()) {  // the scheduler has asked the idempotency record about its canary
            EXPECT_TRUE(waitFor([&] { return kd.logHas("schedule canary handled ok job=" + job); }, 20s)) << kd.log();
        }
        const auto t0 = std::chrono::steady_clock::now();
        kd.proc().signal(SIGTERM);
        EXPECT_EQ(kd.proc().wait(30s), std::optional<int>(0)) << kd.log();
        EXPECT_TRUE(kd.logHas("kanband stopped")) << kd.log();
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    }
};

// The scheduler's idempotency store used to outlive the NATS connection:
// its teardown then waited 2 s for a closed connection on every stop of a
// host with a schedule. A stop with a schedule now takes what one without
// takes (measured in the same run; the margin is far below those 2 s).
TEST_F(Shutdown, AHostWithAScheduleStopsAsFastAsOneWithout) {
    HostOptions o;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    const auto without = stopTime(cfg, "plain", "");
    o.extra_toml = "[[schedule]]\nname = \"tick\"\ndomain = \"orders\"\nevery_ms = 200\npayload = \"tick\"\n";
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    const auto with = stopTime(cfg, "scheduled", "tick");
    std::cout << "[ measured ] SIGTERM to exit: " << without.count() << " ms without a schedule, " << with.count()
              << " ms with one\n";
    EXPECT_LT(with, without + std::chrono::milliseconds(1500));
}

// plugin.h: cancelled() turns true on shutdown. A handler that waits for it
// (its timeout is 10 minutes) ends at once; its item goes back to the
// stream for the next start: not failed, not dead-lettered.
TEST_F(Shutdown, SigtermCancelsRunningHandlersAndTheirItemsStay) {
    DomainSpec d{"slow", kFixtures + "/recorder.so", recorderSettings(out), 600000};
    Kanband& kd = start({d});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.slow", "until-cancelled", {{"Nats-Msg-Id", "patient"}}));
    ASSERT_TRUE(waitFor(
        [&] { return metric(kd.http("GET", "/metrics").body, R"(kanban_items_in_flight{domain="slow"})") == 1.0; },
        20s))
        << kd.log();
    kd.proc().signal(SIGTERM);
    ASSERT_EQ(kd.proc().wait(60s), std::optional<int>(0)) << "the handler was not cancelled\n" << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("item handed back: its handler stopped for the shutdown domain=slow id=patient"));
    EXPECT_TRUE(probe.deadLetters("slow").empty());
    EXPECT_EQ(probe.streamMsgs("KANBAN"), 1u) << "the item must wait for the next start";
    const auto calls = callsFor(readCalls(out), "patient");
    ASSERT_EQ(calls.size(), 1u);
}

// A plugin that calls exit(0) ends the process, but that is no orderly
// stop: the status is non-zero (70), so systemd's Restart=on-failure brings
// the service back, and the log says what happened.
TEST_F(Shutdown, AnExitCalledByAPluginIsAFailure) {
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}});
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "exit:0", {{"Nats-Msg-Id", "leaver"}}));
    const auto status = kd.proc().wait(30s);
    ASSERT_TRUE(status) << "kanband did not end\n" << kd.log();
    EXPECT_EQ(*status, 70) << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("exit() was called outside an orderly stop"));
}

}  // namespace
}  // namespace kanban::test
