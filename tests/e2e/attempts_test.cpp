// Attempts are handler calls, nothing else (README, "Reliability"): an item
// that waited in a batch, was handed back, or lost its delivery to the crash
// of another item's handler is never charged, and never dead-lettered for
// attempts; the item that was in the handler when the process died is.
#include "harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <set>

namespace kanban::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class Attempts : public DaemonTest {
protected:
    // Runs kanband once so that the streams and consumers exist, then stops
    // it: items published next are all waiting when the next one starts.
    void declareTopology() {
        Kanband kd(dir, cfg, "kanband-declare");
        ASSERT_TRUE(kd.waitReady()) << kd.log();
        kd.proc().signal(SIGTERM);
        ASSERT_EQ(kd.proc().wait(30s), std::optional<int>(0)) << kd.log();
    }
};

// A handler that aborts the process on one item, among 200 healthy ones
// that share its batches (pull_batch 10, one worker), under a supervisor
// that restarts kanband each time. Each crash is charged to the crasher
// alone: it reaches the DLQ as handler_crashed after exactly max_attempts
// calls; no healthy item is dead-lettered.
TEST_F(Attempts, ACrashingItemIsChargedAloneAndEndsAsHandlerCrashed) {
    constexpr int kMaxAttempts = 3;
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 10;
    o.max_attempts = kMaxAttempts;
    o.backoff_initial_ms = 50;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out), /*timeout_ms=*/1000}}, o);
    declareTopology();
    NatsProbe probe(nats.url());
    std::vector<std::string> healthy;
    for (int i = 0; i < 200; ++i) {
        healthy.push_back("h-" + std::to_string(i));
        if (i == 100) {
            ASSERT_TRUE(probe.publish("kanban.normal.orders", "abort", {{"Nats-Msg-Id", "crasher"}}));
        }
        ASSERT_TRUE(probe.publish("kanban.normal.orders", "{}", {{"Nats-Msg-Id", healthy.back()}}));
    }

    // The supervisor: restart on every exit until the work is settled.
    int starts = 0;
    const auto settled = [&] { return allHandled(out, healthy) && probe.deadLetters("orders").size() == 1; };
    std::string logs;
    while (!settled() && starts < 8) {
        Kanband kd(dir, cfg, "kanband-" + std::to_string(++starts), dir.file("host.state"));
        // It may reach the crasher and die before a probe sees it ready.
        ASSERT_TRUE(waitFor([&] { return !kd.proc().running() || kd.httpStatus("/readyz") == 200; }, 30s))
            << kd.log();
        waitFor([&] { return settled() || !kd.proc().running(); }, 60s);
        logs += kd.log();
        if (kd.proc().running()) {
            kd.proc().signal(SIGTERM);
            ASSERT_TRUE(kd.proc().wait(30s)) << kd.log();
        }
    }
    ASSERT_TRUE(settled()) << "after " << starts << " starts\n" << logs;
    EXPECT_GE(starts, kMaxAttempts) << "each crash ended a process";

    const auto dlq = probe.deadLetters("orders");
    ASSERT_EQ(dlq.size(), 1u) << logs;
    EXPECT_EQ(dlq[0].headers.at("Kanban-Original-Id"), "crasher");
    EXPECT_EQ(dlq[0].headers.at("Kanban-Attempts"), std::to_string(kMaxAttempts));
    EXPECT_THAT(dlq[0].headers.at("Kanban-Reason"), HasSubstr("handler_crashed"));
    const auto crashes = callsFor(readCalls(out), "crasher");
    ASSERT_EQ(crashes.size(), static_cast<std::size_t>(kMaxAttempts)) << "one call per attempt, none after";
    for (int i = 0; i < kMaxAttempts; ++i) {
        EXPECT_EQ(crashes[i].outcome, "crash");
        EXPECT_EQ(crashes[i].attempt, i + 1) << "the handler is told which attempt it is";
    }
    EXPECT_THAT(logs, HasSubstr("label=handler_crashed"));
    // The healthy items were never charged: every call of theirs was attempt 1.
    for (const auto& c : readCalls(out)) {
        if (c.id == "crasher") continue;
        EXPECT_EQ(c.attempt, 1) << c.id;
    }
}

// Handlers slower than the broker's ack wait (timeout 1 s, ack wait 2 s,
// each slow item runs 3 s) with the items of their batch waiting behind
// them, and max_attempts 1: an item that waited, expired and was delivered
// again was never tried, so it still runs (attempt 1) and nothing reaches
// the DLQ. The waiting items are handed back as soon as the slow handler
// passes its deadline.
TEST_F(Attempts, ItemsWaitingBehindASlowHandlerAreNeverCharged) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    o.pull_batch = 10;
    o.max_attempts = 1;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out), /*timeout_ms=*/1000}}, o);
    declareTopology();
    NatsProbe probe(nats.url());
    std::vector<std::string> all;
    for (int i = 0; i < 20; ++i) {
        const bool slow = i % 10 == 0;
        all.push_back((slow ? "slow-" : "h-") + std::to_string(i));
        ASSERT_TRUE(probe.publish("kanban.normal.orders", slow ? "sleep:3000" : "{}", {{"Nats-Msg-Id", all.back()}}));
    }
    Kanband kd(dir, cfg);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    ASSERT_TRUE(waitFor([&] { return allHandled(out, all); }, 90s)) << kd.log();
    EXPECT_TRUE(probe.deadLetters("orders").empty()) << kd.log();
    for (const auto& c : readCalls(out)) EXPECT_EQ(c.attempt, 1) << c.id;
    EXPECT_THAT(kd.log(), HasSubstr("is past its timeout; 9 unstarted item(s) of its batch handed back"));
}

}  // namespace
}  // namespace kanban::test
