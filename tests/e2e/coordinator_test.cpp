// Jidoka and heijunka end to end: the circuit breaker (spec test 9,
// docs/reliability.md F13, F14), autoscaling, stalled items, and graceful
// shutdown under load (spec test 6, F10).
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <thread>
#include <utility>

namespace kanban::test {
namespace {

using ::testing::HasSubstr;

class Coordinator : public DaemonTest {
protected:
    double scrape(Kanband& kd, const std::string& sample) {
        return metric(kd.http("GET", "/metrics").body, sample).value_or(-1);
    }
    double pulled(Kanband& kd) {
        double n = 0;
        for (const char* p : {"high", "normal", "low"})
            n += scrape(kd, std::string(R"(kanban_items_pulled_total{domain="orders",priority=")") + p + "\"}");
        return n;
    }
    nlohmann::json domainHealth(Kanband& kd) {
        return nlohmann::json::parse(kd.http("GET", "/health").body)["domains"]["orders"];
    }
};

// A breaker opened by an item that then waits out a long backoff: the
// trials find nothing, so after an open period of empty trials the breaker
// closes; the gauge and /health do not sit at half_open on an idle domain.
TEST_F(Coordinator, AnIdleDomainsBreakerDoesNotStayHalfOpen) {
    HostOptions o;
    o.failure_threshold = 1;
    o.open_ms = 500;
    o.backoff_initial_ms = 120000;  // the failed item is away for minutes
    o.backoff_max_ms = 120000;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    publish(cfg, "orders", "normal", 1, "retry");
    ASSERT_TRUE(waitFor([&] { return kd.logHas("circuit opened domain=orders"); }, 10s)) << kd.log();
    ASSERT_TRUE(waitFor([&] { return kd.logHas("circuit half-open domain=orders"); }, 10s)) << kd.log();
    EXPECT_TRUE(waitFor([&] { return scrape(kd, R"(kanban_circuit_state{domain="orders"})") == 0; }, 10s)) << kd.log();
    EXPECT_EQ(domainHealth(kd)["circuit"], "closed");
    EXPECT_THAT(kd.log(), HasSubstr("circuit closed domain=orders: nothing waits to be tried"));
}

// F14 / spec test 9: a downstream outage opens the breaker; while open the
// domain pulls nothing but one trial per open period, the items wait in
// the broker and none is dead-lettered; after recovery all are handled.
TEST_F(Coordinator, DownstreamOutageOpensTheBreakerAndNothingIsLost) {
    const std::string down = dir.file("downstream-down");
    writeFile(down, "");
    HostOptions o;
    o.workers = 2;
    o.max_workers = 2;
    o.pull_batch = 5;
    o.failure_threshold = 3;
    o.open_ms = 1000;
    o.max_attempts = 50;
    o.backoff_initial_ms = 50;
    o.backoff_max_ms = 200;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out) + ", down_while = \"" + down + "\""}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const auto ids = publish(cfg, "orders", "normal", 40);

    ASSERT_TRUE(waitFor([&] { return kd.logHas("circuit opened domain=orders"); }, 10s)) << kd.log();
    EXPECT_EQ(scrape(kd, R"(kanban_circuit_state{domain="orders"})"), 2);
    EXPECT_NE(domainHealth(kd)["circuit"], "closed");
    // Let the items handed back at the opening settle, then watch the pull count.
    std::this_thread::sleep_for(300ms);
    const double before = pulled(kd);
    std::this_thread::sleep_for(2500ms);  // the observation window: about two open periods
    const double during = pulled(kd) - before;
    std::cout << "[ measured ] pulled while open for 2.5 s: " << during << " (trials)\n";
    EXPECT_LE(during, 4) << "the breaker is open but the domain keeps pulling";
    EXPECT_GE(during, 1) << "no half-open trial";
    EXPECT_THAT(kd.log(), HasSubstr("circuit half-open domain=orders: one trial item"));
    EXPECT_EQ(probe.deadLetters("orders").size(), 0u) << "an outage must not dead-letter the queue";
    EXPECT_GT(probe.streamMsgs("KANBAN"), 30u) << "the items wait in the broker";

    std::remove(down.c_str());  // the downstream is back
    ASSERT_TRUE(waitFor([&] { return okCounts(readCalls(out)).size() == ids.size(); }, 30s)) << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("circuit closed domain=orders"));
    EXPECT_EQ(domainHealth(kd)["circuit"], "closed");
    EXPECT_EQ(probe.deadLetters("orders").size(), 0u);
    EXPECT_GE(scrape(kd, R"(kanban_circuit_transitions_total{domain="orders",state="open"})"), 1);
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id;
}

// F13: one poison item among healthy ones. It is retried up to max_attempts
// with backoff and dead-lettered; the healthy items keep resetting the
// failure count, so the breaker never opens and they all finish.
TEST_F(Coordinator, PoisonItemIsDeadLetteredWithoutStoppingTheHealthyOnes) {
    HostOptions o;
    o.workers = 2;
    o.failure_threshold = 3;
    o.open_ms = 1000;
    o.max_attempts = 4;
    o.backoff_initial_ms = 100;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out, 10)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    const auto poison = publish(cfg, "orders", "normal", 1, "retry");
    const auto healthy = publish(cfg, "orders", "normal", 100);
    ASSERT_TRUE(waitFor([&] { return probe.deadLetters("orders").size() == 1; }, 20s)) << kd.log();
    ASSERT_TRUE(waitFor([&] { return okCounts(readCalls(out)).size() == healthy.size(); }, 20s)) << kd.log();
    const auto dl = probe.deadLetters("orders");
    EXPECT_EQ(dl[0].headers.at("Kanban-Original-Id"), poison[0]);
    EXPECT_GE(std::stoi(dl[0].headers.at("Kanban-Attempts")), 3);
    EXPECT_EQ(scrape(kd, R"(kanban_circuit_transitions_total{domain="orders",state="open"})"), 0);
    EXPECT_EQ(domainHealth(kd)["circuit"], "closed");
}

// The coordinator: a backlog raises the pool towards
// max(min, min(max, avg_depth / 20 + 2)); an empty queue brings it back to min.
TEST_F(Coordinator, PoolGrowsWithTheBacklogAndShrinksWhenItIsGone) {
    HostOptions o;
    o.workers = 1;
    o.max_workers = 4;
    o.pull_batch = 1;
    o.health_interval_ms = 200;
    o.depth_window = 2;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out, 20)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    // Idle: 0 / 20 + 2 = 2 workers (min is 1, but the formula's floor is 2).
    ASSERT_TRUE(waitFor([&] { return domainHealth(kd)["workers"] == 2; }, 5s)) << kd.log();
    const auto ids = publish(cfg, "orders", "normal", 200);
    ASSERT_TRUE(waitFor([&] { return domainHealth(kd)["workers"] == 4; }, 10s)) << kd.log();
    EXPECT_EQ(domainHealth(kd)["target_workers"], 4);
    EXPECT_EQ(scrape(kd, R"(kanban_workers{domain="orders"})"), 4);
    EXPECT_THAT(kd.log(), HasSubstr("coordinator: domain=orders workers"));
    ASSERT_TRUE(waitFor([&] { return okCounts(readCalls(out)).size() == ids.size(); }, 60s)) << kd.log();
    // Empty again: back to 2 (avg 0 / 20 + 2), retiring idle workers only.
    ASSERT_TRUE(waitFor([&] { return domainHealth(kd)["workers"] == 2; }, 10s)) << kd.log();
    EXPECT_THAT(kd.log(), HasSubstr("retired (pool target 2)"));
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id << ": retiring dropped or repeated it";
    std::set<long> threads;
    for (const auto& c : readCalls(out)) threads.insert(c.tid);
    EXPECT_GE(threads.size(), 3u);
}

// An item in its handler longer than stall_threshold_ms is reported, and
// the age of the oldest item in the broker is watched.
TEST_F(Coordinator, LongRunningItemIsReportedAsStalled) {
    HostOptions o;
    o.health_interval_ms = 100;
    o.stall_threshold_ms = 300;
    Kanband& kd = start({{"orders", kFixtures + "/recorder.so", recorderSettings(out)}}, o);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    NatsProbe probe(nats.url());
    ASSERT_TRUE(probe.publish("kanban.normal.orders", "progress:2000", {{"Nats-Msg-Id", "slow-1"}}));
    ASSERT_TRUE(waitFor([&] { return domainHealth(kd)["stalled"] == 1; }, 5s)) << kd.log();
    EXPECT_TRUE(waitFor([&] { return scrape(kd, R"(kanban_stalled_items{domain="orders"})") == 1; }, 2s));
    // The same item is the oldest one in the broker, and ages.
    EXPECT_TRUE(waitFor([&] { return domainHealth(kd)["oldest_item_age_seconds"].get<double>() >= 0.5; }, 3s));
    EXPECT_GE(scrape(kd, R"(kanban_oldest_item_age_seconds{domain="orders"})"), 0.3);
    ASSERT_TRUE(waitFor([&] { return readLines(out).size() == 1; }, 5s));
    EXPECT_TRUE(waitFor([&] { return domainHealth(kd)["stalled"] == 0; }, 2s));
    EXPECT_TRUE(waitFor([&] { return domainHealth(kd)["oldest_item_age_seconds"] == 0; }, 2s)) << "nothing left";
}

// Spec test 6 / F10: SIGTERM under load stops fetching at once, lets the
// items in handlers finish, hands back the rest for prompt redelivery and
// exits 0. Nothing is lost and nothing runs twice.
// Kanban: an idle line pulls nothing. Idle workers wait without asking the
// broker (a worker that found its domain empty, with nothing in flight,
// waits on a plain subscription to the domain's subjects), a publish wakes
// them at once, and a stop interrupts their wait (which is 5 s long).
TEST_F(Coordinator, IdleDomainsAskTheBrokerNothingAndWakeOnPublish) {
    std::vector<DomainSpec> domains;
    for (int i = 0; i < 10; ++i) domains.push_back({"idle" + std::to_string(i), kFixtures + "/recorder.so", recorderSettings(out)});
    Kanband& kd = start(domains, 2);
    ASSERT_TRUE(kd.waitReady()) << kd.log();
    JsApiWatch watch(nats.url());
    // Settled: a whole second without a request (each worker asks its levels
    // once or twice, then waits quietly).
    std::uint64_t seen = ~std::uint64_t{0};  // the first poll only takes a count
    ASSERT_TRUE(waitFor(
        [&] {
            const std::uint64_t now = std::exchange(seen, watch.count());
            return watch.count() == now;
        },
        20s, 1000ms))
        << "20 idle workers kept asking: " << watch.count() << " requests, the last on " << watch.lastSubject();
    // Polling would be ~40 requests per worker per second here.
    const std::uint64_t before = watch.count();
    EXPECT_FALSE(waitFor([&] { return watch.count() - before > 2; }, 3s))
        << watch.count() - before << " requests in 3 s from idle workers, the last on " << watch.lastSubject();

    const auto ids = publish(cfg, "idle7", "high", 1);
    ASSERT_EQ(ids.size(), 1u);
    EXPECT_TRUE(waitFor([&] { return allHandled(out, ids); }, 10s)) << kd.log();

    kd.proc().signal(SIGTERM);
    EXPECT_EQ(kd.proc().wait(3s), 0) << "a stop must interrupt the idle workers' 5 s waits\n" << kd.log();
}

TEST_F(Coordinator, SigtermUnderLoadLosesNothing) {
    HostOptions o;
    o.workers = 4;
    o.max_workers = 4;
    o.pull_batch = 5;
    writeConfig({{"orders", kFixtures + "/recorder.so", recorderSettings(out, 30)}}, o);
    const auto ids = publish(cfg, "orders", "normal", 200);
    {
        Kanband first(dir, cfg, "first");
        ASSERT_TRUE(first.waitReady()) << first.log();
        // 62: mid-batch for workers that run in step (4 × 5 items per round).
        ASSERT_TRUE(waitFor([&] { return readLines(out).size() >= 62; }, 30s)) << first.log();
        const auto t0 = std::chrono::steady_clock::now();
        first.proc().signal(SIGTERM);
        ASSERT_EQ(first.proc().wait(15s), std::optional<int>(0)) << first.log();
        const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
        std::cout << "[ measured ] SIGTERM to exit: " << took.count() << " ms\n";
        EXPECT_THAT(first.log(), HasSubstr("SIGTERM received: stopping"));
        // Everything pulled was settled before the exit: handled, or handed back.
        std::smatch m;
        const std::string log = first.log();
        ASSERT_TRUE(std::regex_search(log, m, std::regex("pulled=([0-9]+) ok=([0-9]+) .* nacked=([0-9]+)"))) << log;
        std::cout << "[ measured ] at SIGTERM: pulled " << m[1] << ", handled " << m[2] << ", handed back " << m[3] << "\n";
        EXPECT_EQ(std::stoi(m[1]), std::stoi(m[2]) + std::stoi(m[3]));
    }
    const std::size_t before = readLines(out).size();
    const auto restart = std::chrono::steady_clock::now();
    Kanband second(dir, cfg, "second");
    ASSERT_TRUE(second.waitReady()) << second.log();
    ASSERT_TRUE(waitFor([&] { return okCounts(readCalls(out)).size() == ids.size(); }, 30s)) << second.log();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - restart);
    std::cout << "[ measured ] " << before << " handled before SIGTERM; the rest " << took.count()
              << " ms after the restart\n";
    // Handed-back items come at once, not after the 15 s ack wait.
    EXPECT_LT(took, 12s);
    for (const auto& [id, n] : okCounts(readCalls(out))) EXPECT_EQ(n, 1) << id;
}

}  // namespace
}  // namespace kanban::test
