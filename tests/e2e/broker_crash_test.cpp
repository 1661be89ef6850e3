// What a crashed nats-server leaves behind (docs/reliability.md F1, issue
// 19 point 8): items the consumer had acknowledged but whose removal from
// the work-queue stream the server never flushed. They sit below the
// consumer's ack floor, are never delivered again, are invisible in the
// depth and count against the stream's max_msgs: the coordinator removes
// them, counts them and says so.
#include "harness.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>

namespace kanban::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

class BrokerCrash : public DaemonTest {};

// The state a kill -9 can leave, made deterministic: the stream's message
// files from before the items were handled, the consumer's state from
// after (its ack floor past them).
TEST_F(BrokerCrash, AcknowledgedItemsTheServerStillHoldsAreRemoved) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 1;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    {
        Kanband kd(dir, cfg, "kanband-declare");
        ASSERT_TRUE(kd.waitReady()) << kd.log();
        kd.proc().signal(SIGTERM);
        ASSERT_EQ(kd.proc().wait(30s), std::optional<int>(0)) << kd.log();
    }
    constexpr int kItems = 30;
    std::vector<std::string> ids;
    {
        NatsProbe probe(nats.url());
        for (int i = 0; i < kItems; ++i) {
            ids.push_back("s-" + std::to_string(i));
            ASSERT_TRUE(probe.publish("kanban.normal.orders", "{}", {{"Nats-Msg-Id", ids.back()}}));
        }
    }
    const fs::path msgs = fs::path(nats.storeDir()) / "jetstream" / "$G" / "streams" / "KANBAN" / "msgs";
    const fs::path before = dir.file("msgs-before");
    nats.stop();
    ASSERT_TRUE(fs::is_directory(msgs)) << msgs;
    fs::copy(msgs, before, fs::copy_options::recursive);
    nats.start();
    {
        Kanband kd(dir, cfg, "kanband-handles");
        ASSERT_TRUE(kd.waitReady()) << kd.log();
        ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 60s)) << kd.log();
        kd.proc().signal(SIGTERM);
        ASSERT_EQ(kd.proc().wait(30s), std::optional<int>(0)) << kd.log();
    }
    nats.stop();
    fs::remove_all(msgs);
    fs::copy(before, msgs, fs::copy_options::recursive);
    nats.start();
    NatsProbe probe(nats.url());
    ASSERT_EQ(probe.streamMsgs("KANBAN"), std::optional<std::uint64_t>(kItems)) << "the crash state was not reproduced";

    Kanband kd(dir, cfg, "kanband-sweeps");
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    ASSERT_TRUE(waitFor([&] { return probe.streamMsgs("KANBAN") == std::optional<std::uint64_t>(0); }, 30s))
        << kd.log();
    EXPECT_TRUE(waitFor([&] { return metric(kd.http("GET", "/metrics").body, R"(kanban_acked_items_swept_total{domain="orders"})") ==
                               std::optional<double>(kItems); }, 10s))
        << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("domain=orders: removed " + std::to_string(kItems) + " acknowledged item(s)"));
    const auto n = okCounts(readCalls(out));
    for (const auto& id : ids) EXPECT_EQ(n.count(id) ? n.at(id) : 0, 1) << id << ": handled once, never again";
}

}  // namespace
}  // namespace kanban::test
