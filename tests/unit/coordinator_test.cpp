// The coordinator's tick without brokers: a fake Inspector answers with
// depths, a fake pool records what it is asked.
#include "coordinator/coordinator.hpp"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

namespace kanban::host::coordinator {
namespace {

using namespace std::chrono_literals;

class FakeInspector final : public broker::Inspector {
public:
    std::string_view backendName() const override { return "nats"; }
    bool healthy() const override { return true; }
    bool reachable(std::string_view) const override { return true; }
    void refresh() override { ++refreshes; }
    broker::QueueReport inspect(const std::vector<std::string>& domains, const broker::InspectOptions&) override {
        {
            std::unique_lock lock(mu);
            ++inspecting;
            cv.notify_all();
            cv.wait(lock, [&] { return !hold; });
        }
        broker::QueueReport r;
        if (!nats_answers) return r;
        auto& nats = r.backends["nats"];
        for (const auto& d : domains) {
            broker::DomainCounts c;
            c.depth[1] = depth.count(d) ? depth.at(d) : 0;
            c.dead_letters = dead.count(d) ? dead.at(d) : 0;
            nats.domains[d] = c;
        }
        nats.unclaimed = unclaimed;
        if (!rabbit_dead.empty()) {
            auto& rabbit = r.backends["rabbitmq"];
            for (const auto& [d, n] : rabbit_dead) {
                broker::DomainCounts c;
                c.by_priority = false;
                c.dead_letters = n;
                rabbit.domains[d] = c;
            }
        }
        return r;
    }
    broker::DeadLetterListing deadLetters(std::string_view, const broker::DeadLetterQuery&) override { return {}; }
    broker::ReplayReport replay(std::string_view, const broker::DeadLetterFilter&) override { return {}; }
    broker::ReplayReport purge(std::string_view, const broker::DeadLetterFilter&) override { return {}; }

    std::map<std::string, std::uint64_t> depth, dead, rabbit_dead;
    std::map<std::string, std::uint64_t> unclaimed;
    bool nats_answers = true;
    int refreshes = 0;
    // To hold inspect() until released.
    std::mutex mu;
    std::condition_variable cv;
    bool hold = false;
    int inspecting = 0;
};

class FakePool final : public worker::PoolControl {
public:
    explicit FakePool(std::size_t capacity) : capacity_(capacity) {}
    std::size_t target() const override { return target_; }
    std::size_t capacity() const override { return capacity_; }
    void setTarget(std::size_t n) override {
        ++set_calls;
        target_ = std::min(n, capacity_);  // as DomainWorkers does
    }
    std::size_t stalled(std::chrono::milliseconds) const override { return 0; }
    int set_calls = 0;

private:
    std::size_t capacity_;
    std::size_t target_ = 2;
};

config::Config configWith(std::int64_t min, std::int64_t max, std::int64_t window = 3) {
    config::Config c;
    c.workers.min = min;
    c.workers.max = max;
    c.coordinator.depth_window = window;
    c.coordinator.health_interval_ms = 60000;
    return c;
}

struct Fixture {
    explicit Fixture(config::Config c = configWith(2, 20)) : cfg(std::move(c)) {}
    Coordinator make() {
        return Coordinator(cfg, brokers, metrics, [this] { return domains; });
    }
    config::Config cfg;
    FakeInspector brokers;
    metrics::Metrics metrics{"test"};
    std::vector<Domain> domains;
};

TEST(Coordinator, PoolSizeFollowsTheSpecFormula) {
    EXPECT_EQ(targetWorkers(0, 2, 20), 2);
    EXPECT_EQ(targetWorkers(0, 1, 20), 2) << "avg/20 + 2 is at least 2 when max allows";
    EXPECT_EQ(targetWorkers(0, 1, 1), 1);
    EXPECT_EQ(targetWorkers(59.9, 2, 20), 4);
    EXPECT_EQ(targetWorkers(60, 2, 20), 5);
    EXPECT_EQ(targetWorkers(10000, 2, 20), 20);
    EXPECT_EQ(targetWorkers(100, 8, 20), 8) << "never below min";
}

TEST(Coordinator, ScalesEachPoolFromItsWindowAverage) {
    Fixture f;
    auto orders = std::make_shared<FakePool>(20);
    auto quiet = std::make_shared<FakePool>(20);
    f.domains = {{"orders", orders}, {"quiet", quiet}};
    Coordinator c = f.make();
    f.brokers.depth["orders"] = 300;  // 300/20 + 2 = 17
    c.tick();
    EXPECT_EQ(orders->target(), 17u);
    EXPECT_EQ(quiet->target(), 2u);
    f.brokers.depth["orders"] = 0;  // window (300, 0) averages 150: 9
    c.tick();
    EXPECT_EQ(orders->target(), 9u);
    c.tick();  // (300, 0, 0): 100 -> 7
    EXPECT_EQ(orders->target(), 7u);
    c.tick();  // the window holds 3: (0, 0, 0) -> min
    EXPECT_EQ(orders->target(), 2u);
    EXPECT_EQ(c.lastDepth("orders"), 0u);
    EXPECT_EQ(c.snapshot()->depth_samples.size(), 3u);
}

// A reload that raised workers.max past the slots allocated at start: the
// target is what the pool can run, asked for once, not on every tick.
TEST(Coordinator, TargetAboveWhatThePoolCanRunIsAskedForOnce) {
    Fixture f(configWith(2, 20));
    auto pool = std::make_shared<FakePool>(4);
    f.domains = {{"orders", pool}};
    Coordinator c = f.make();
    f.brokers.depth["orders"] = 10000;
    for (int i = 0; i < 5; ++i) c.tick();
    EXPECT_EQ(pool->target(), 4u);
    EXPECT_EQ(pool->set_calls, 1) << "asked again on every tick";
}

TEST(Coordinator, ADomainThatDidNotStartIsSampledButNotScaled) {
    Fixture f;
    f.domains = {{"broken", nullptr}};
    Coordinator c = f.make();
    f.brokers.depth["broken"] = 7;
    c.tick();
    EXPECT_EQ(c.lastDepth("broken"), 7u);
}

TEST(Coordinator, OrphansAreTheItemsNoConfiguredDomainConsumes) {
    Fixture f;
    f.domains = {{"orders", std::make_shared<FakePool>(20)}};
    Coordinator c = f.make();
    f.brokers.unclaimed = {{"kanban.normal.ghost", 3}, {"kanban.high.gone", 2}};
    c.tick();
    EXPECT_EQ(c.snapshot()->orphaned, 5u);
    EXPECT_NE(f.metrics.scrape().find("kanban_orphaned_items 5"), std::string::npos);
    f.brokers.unclaimed.clear();
    c.tick();
    EXPECT_EQ(c.snapshot()->orphaned, 0u);
}

TEST(Coordinator, DeadLettersOfEveryBrokerAreCounted) {
    Fixture f;
    f.domains = {{"orders", std::make_shared<FakePool>(20)}};
    Coordinator c = f.make();
    f.brokers.dead["orders"] = 2;
    f.brokers.rabbit_dead["orders"] = 3;
    c.tick();
    EXPECT_EQ(c.snapshot()->domains.at("orders").dead_letters, 5u);
}

TEST(Coordinator, ABrokerThatDoesNotAnswerCountsAsEmptyAndKeepsTheLastDeadLetterCount) {
    Fixture f;
    f.domains = {{"orders", std::make_shared<FakePool>(20)}};
    Coordinator c = f.make();
    f.brokers.depth["orders"] = 40;
    f.brokers.dead["orders"] = 4;
    c.tick();
    f.brokers.nats_answers = false;
    c.tick();
    EXPECT_EQ(c.lastDepth("orders"), 0u);
    EXPECT_EQ(c.snapshot()->domains.at("orders").dead_letters, 4u);
    EXPECT_EQ(f.brokers.refreshes, 2) << "the brokers are probed every tick";
}

// /health and the scheduler read the last tick while the next one waits on
// a broker: they never wait for it.
TEST(Coordinator, ReadersDoNotWaitForATickThatWaitsOnABroker) {
    Fixture f;
    f.domains = {{"orders", std::make_shared<FakePool>(20)}};
    Coordinator c = f.make();
    f.brokers.depth["orders"] = 9;
    c.tick();
    {
        std::lock_guard lock(f.brokers.mu);
        f.brokers.hold = true;
    }
    std::thread ticking([&] { c.tick(); });
    {
        std::unique_lock lock(f.brokers.mu);
        ASSERT_TRUE(f.brokers.cv.wait_for(lock, 10s, [&] { return f.brokers.inspecting == 2; }));
    }
    auto read = std::async(std::launch::async, [&] { return std::make_pair(c.lastDepth("orders"), c.snapshot()); });
    const bool answered = read.wait_for(10s) == std::future_status::ready;
    {
        std::lock_guard lock(f.brokers.mu);
        f.brokers.hold = false;
    }
    f.brokers.cv.notify_all();
    ticking.join();
    ASSERT_TRUE(answered) << "a reader waited for the broker I/O of a tick";
    EXPECT_EQ(read.get().first, 9u);
}

// start() ticks on a thread of its own; reconfigure() with a shorter
// interval takes effect without waiting out the long one.
TEST(Coordinator, TicksOnItsOwnThreadAndANewIntervalAppliesAtOnce) {
    Fixture f;
    f.domains = {{"orders", std::make_shared<FakePool>(20)}};
    Coordinator c = f.make();
    c.start();
    auto ticks = [&] {
        std::lock_guard lock(f.brokers.mu);
        return f.brokers.inspecting;
    };
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (ticks() < 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(ticks(), 1) << "no first tick (or more than one within the 60 s interval)";
    config::Config fast = f.cfg;
    fast.coordinator.health_interval_ms = 10;
    c.reconfigure(fast);
    while (ticks() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    EXPECT_GE(ticks(), 3) << "the 60 s wait was not cut short by the new interval";
    c.stop();
}

}  // namespace
}  // namespace kanban::host::coordinator
