// rate_limit's arithmetic (GCRA) and the host's side of it (RateGate),
// with a fake store; the shared store itself is tested against nats-server
// (integration.Rates.*) and the whole across two hosts (e2e.FlowControl.*).
#include "flow/rate_gate.hpp"
#include "flow/rate_limit.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

using kanban::host::Error;
using kanban::host::Result;
using namespace kanban::host::flow;

TEST(RateLimit, ParsesCountsPerSecondMinuteAndHour) {
    EXPECT_EQ(parseRateLimit("50/s"), (RateLimit{50, 1000}));
    EXPECT_EQ(parseRateLimit("600/m"), (RateLimit{600, 60000}));
    EXPECT_EQ(parseRateLimit(" 7 / h "), (RateLimit{7, 3600000}));
    EXPECT_EQ(parseRateLimit("50/s")->intervalUs(), 20000);
    EXPECT_EQ(toString(RateLimit{600, 60000}), "600/m");
    for (const char* bad : {"", "50", "/s", "50/", "50/d", "-1/s", "0/s", "1.5/s", "50/sec", "1000001/s", "x/s"})
        EXPECT_FALSE(parseRateLimit(bad)) << bad;
}

// Items reserved one by one at the same instant start one interval apart;
// with a burst of B the first B start at once.
TEST(RateLimit, StartsAreSpacedByTheIntervalAfterABurst) {
    constexpr std::int64_t I = 50000;  // 20/s
    for (std::int64_t burst : {1, 3}) {
        std::int64_t tat = 0;
        std::vector<std::int64_t> starts;
        for (int i = 0; i < 10; ++i) {
            const Reservation r = reserveStart(tat, 1'000'000, 1, I, burst);
            starts.push_back(r.start_unix_us);
            tat = r.tat_unix_us;
        }
        for (std::int64_t i = 0; i < 10; ++i)
            EXPECT_EQ(starts[i], 1'000'000 + std::max<std::int64_t>(0, i - (burst - 1)) * I) << "burst " << burst << " item " << i;
    }
}

// Whatever the batches, n items never start within less than
// (n - burst) intervals: the limit's meaning, checked over every window.
TEST(RateLimit, NoWindowHoldsMoreThanTheRateAllowsPlusTheBurst) {
    constexpr std::int64_t I = 10000, burst = 4;
    std::int64_t tat = 0, now = 0;
    std::vector<std::int64_t> starts;
    for (int round = 0; round < 200; ++round) {
        const std::int64_t n = 1 + round % burst;
        const Reservation r = reserveStart(tat, now, n, I, burst);
        ASSERT_GE(r.start_unix_us, now);
        for (std::int64_t k = 0; k < n; ++k) starts.push_back(r.start_unix_us);
        tat = r.tat_unix_us;
        now += (round % 7) * 3000;  // callers arrive irregularly, sometimes at once
    }
    for (std::size_t i = 0; i < starts.size(); ++i)
        for (std::size_t j = i + 1; j < starts.size(); ++j) {
            const auto n = static_cast<std::int64_t>(j - i + 1);
            if (n > burst) {
                ASSERT_GE(starts[j] - starts[i], (n - burst) * I) << i << ".." << j;
            }
        }
}

TEST(RateLimit, AnIdleDomainDoesNotSaveUpMoreThanTheBurst) {
    constexpr std::int64_t I = 1000;
    const Reservation first = reserveStart(0, 5'000'000, 2, I, 2);
    EXPECT_EQ(first.start_unix_us, 5'000'000);
    const Reservation next = reserveStart(first.tat_unix_us, 5'000'000, 2, I, 2);
    EXPECT_EQ(next.start_unix_us, 5'000'000 + 2 * I);
}

namespace {
class FakeRates final : public RateStore {
public:
    bool down = false;
    int calls = 0;
    Result<std::int64_t> reserve(const std::string& domain, std::int64_t, const RateLimit&, std::int64_t) override {
        ++calls;
        EXPECT_EQ(domain, "partner");
        if (down) return Error{"nats: not connected"};
        return std::int64_t{42};
    }
};
}  // namespace

// NATS down: the host keeps its share (rate / hosts) alone, and goes back
// to the shared state when it answers again.
TEST(RateGate, KeepsItsShareAloneWhileTheSharedStateCannotBeRead) {
    auto store = std::make_shared<FakeRates>();
    RateGate gate(store, "partner");
    const RateLimit rate{10, 1000};  // 100 ms apart across the cluster
    EXPECT_EQ(gate.reserve(1, rate, 1, 3), 42);
    store->down = true;
    const std::int64_t a = gate.reserve(1, rate, 1, 3);
    const std::int64_t b = gate.reserve(1, rate, 1, 3);
    EXPECT_EQ(b - a, 300000) << "three hosts share the limit: this one starts every 300 ms";
    store->down = false;
    EXPECT_EQ(gate.reserve(1, rate, 1, 3), 42);
    EXPECT_EQ(store->calls, 4);
}

TEST(RateGate, LetsOneWorkerInAtATime) {
    RateGate gate(nullptr, "partner");
    auto first = gate.enter(std::chrono::milliseconds(10));
    ASSERT_TRUE(first.held());
    std::thread other([&] { EXPECT_FALSE(gate.enter(std::chrono::milliseconds(20)).held()); });
    other.join();
    first.leave();
    EXPECT_TRUE(gate.enter(std::chrono::milliseconds(10)).held());
    {
        auto second = gate.enter(std::chrono::milliseconds(10));
        ASSERT_TRUE(second.held());
    }  // left when destroyed
    EXPECT_TRUE(gate.enter(std::chrono::milliseconds(10)).held());
}
