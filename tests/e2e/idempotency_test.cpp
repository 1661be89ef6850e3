// The idempotency record as a done log with a local index per host
// (docs/design.md §5): the cases that can hand a completed id to a handler
// again, with two hosts. The single-host cases (a duplicate after the
// window, kill -9 of kanband, kill -9 of nats-server) are in
// work_semantics_test.cpp.
#include "harness.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <iostream>
#include <regex>
#include <thread>

namespace kanban::test {
namespace {

class Idempotency : public DaemonTest {
protected:
    // Two hosts of 2 workers each, sharing domain "orders" (a recorder
    // whose items take `sleep_ms`, with handler timeout `timeout_ms`).
    HostOptions twoHosts(int sleep_ms, std::int64_t timeout_ms) {
        HostOptions o;
        o.workers = 2;
        o.max_workers = 2;
        o.hosts = 2;
        writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out, sleep_ms), timeout_ms}}, o);
        return o;
    }
    // Items the handler ran more than once, and those among them whose
    // first run ended more than `before` ahead of `at_us`.
    struct Repeats {
        long ids = 0;
        long old = 0;
    };
    Repeats repeatsOf(const std::vector<std::string>& ids, std::int64_t at_us, std::chrono::milliseconds before) {
        Repeats r;
        const auto calls = readCalls(out);
        for (const auto& id : ids) {
            const auto c = callsFor(calls, id);
            if (c.size() < 2) continue;
            ++r.ids;
            if (c.front().epoch_us < at_us - before.count() * 1000) ++r.old;
        }
        return r;
    }
    // Items a host's handlers finished whose ack it has not sent yet.
    static double handledNotAcked(Kanband& kd) {
        const std::string m = kd.http("GET", "/metrics").body;
        const auto done = metric(m, R"(kanban_items_processed_total{domain="orders",outcome="ok"})");
        const auto acked = metric(m, R"(kanban_items_acked_total{domain="orders"})");
        return done.value_or(0) - acked.value_or(0);
    }
    static long absorbed(const std::string& log) {
        long n = 0;
        const std::regex re("domain stopped domain=orders .* duplicates=([0-9]+)");
        for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator(); ++it)
            n += std::stol((*it)[1]);
        return n;
    }
};

// Two hosts race on the redeliveries that a killed nats-server makes (it
// forgets its last acks): whichever host gets one, an id whose record was
// stored is acked without its handler. Only the items in a handler at the
// kill (at most hosts × workers × pull_batch) may run again, and none that
// finished well before it.
TEST_F(Idempotency, TwoHostsRacingOnRedeliveriesAfterAKilledServerRepeatNoRecordedWork) {
    const HostOptions o = twoHosts(1, 2000);
    std::vector<std::string> ids;
    for (const char* p : {"high", "normal", "low"})
        for (auto& id : publish(cfg, "orders", p, 500)) ids.push_back(id);
    Kanband a(dir, cfg, "a");
    Kanband b(dir, cfg, "b");
    ASSERT_TRUE(a.waitReady()) << a.log();
    ASSERT_TRUE(b.waitReady()) << b.log();
    ASSERT_TRUE(waitFor([&] { return readLines(out).size() >= ids.size() * 2 / 5; }, 60s)) << a.log();
    nats.kill();  // right after a burst of acks: both hosts are draining
    const std::int64_t kill_us = epochUs();
    std::this_thread::sleep_for(1s);  // the fault: an outage of 1 s
    nats.start();
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 90s)) << a.log() << b.log();
    for (Kanband* kd : {&a, &b}) {
        kd->proc().signal(SIGTERM);
        ASSERT_EQ(kd->proc().wait(20s), std::optional<int>(0)) << kd->log();
    }
    const auto n = okCounts(readCalls(out));
    const Repeats r = repeatsOf(ids, kill_us, 2s);
    std::cout << "[ measured ] kill -9 nats-server under two hosts: handler repeated for " << r.ids << " ids; "
              << absorbed(a.log()) + absorbed(b.log()) << " redeliveries acked without the handler\n";
    EXPECT_EQ(n.size(), ids.size()) << "lost or unexpected ids";
    EXPECT_LE(r.ids, 2 * o.workers * o.pull_batch) << "more repeats than items in a handler at the kill";
    EXPECT_EQ(r.old, 0) << "an item handled over 2 s before the kill ran again";
}

// kill -9 of one host mid-batch while another runs: the survivor gets the
// dead host's items after their ack wait and runs only those whose record
// the dead host had not stored (its last few ms of work per worker).
TEST_F(Idempotency, AHostKilledMidBatchLeavesTheOtherOnlyItsUnrecordedItems) {
    const HostOptions o = twoHosts(20, 1000);
    const auto ids = publish(cfg, "orders", "normal", 400);
    Kanband a(dir, cfg, "a");
    Kanband b(dir, cfg, "b");
    ASSERT_TRUE(a.waitReady()) << a.log();
    ASSERT_TRUE(b.waitReady()) << b.log();
    ASSERT_TRUE(waitFor([&] { return readLines(out).size() >= ids.size() / 3; }, 60s)) << a.log();
    // Mid-batch: host a has handled items it has not acked yet (a slow
    // host may have taken no work so far, or sit between two batches).
    ASSERT_TRUE(waitFor([&] { return handledNotAcked(a) >= 2; }, 60s)) << a.log();
    a.proc().signal(SIGKILL);
    const std::int64_t kill_us = epochUs();
    ASSERT_TRUE(a.proc().wait(10s).has_value());
    ASSERT_TRUE(waitFor([&] { return allHandled(out, ids); }, 90s)) << b.log();
    b.proc().signal(SIGTERM);
    ASSERT_EQ(b.proc().wait(20s), std::optional<int>(0)) << b.log();
    const auto n = okCounts(readCalls(out));
    const Repeats r = repeatsOf(ids, kill_us, 1s);
    const long acked = absorbed(b.log());
    std::cout << "[ measured ] kill -9 of one of two hosts: handler repeated for " << r.ids << " ids; " << acked
              << " of its items acked by the other host without the handler\n";
    EXPECT_EQ(n.size(), ids.size()) << "lost or unexpected ids";
    // A record is written at least every 10 ms while a batch runs: with
    // 20 ms items, only an item whose record was in flight (one, or two if
    // the store was slow) per worker; a record per batch would be up to 10.
    EXPECT_LE(r.ids, 2 * o.workers) << "more repeats than records in flight";
    EXPECT_EQ(r.old, 0) << "an item handled over 1 s before the kill ran again";
    EXPECT_GT(acked, 0) << "the dead host's recorded-but-unacked items were run again instead of acked";
}

}  // namespace
}  // namespace kanban::test
