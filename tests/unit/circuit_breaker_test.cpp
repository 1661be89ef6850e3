// The circuit breaker's state machine and the coordinator's pool formula,
// on a fake clock (pure logic).
#include "worker/circuit_breaker.hpp"

#include <gtest/gtest.h>

namespace kanban::host::worker {
namespace {

using namespace std::chrono_literals;
using State = CircuitBreaker::State;

struct Fixture {
    double random = 0.0;  // the jitter draw
    CircuitBreaker breaker{3, 1000ms, 0.2, [this] { return random; }};
    CircuitBreaker::Clock::time_point t0 = CircuitBreaker::Clock::now();
};

TEST(CircuitBreaker, OpensAfterTheThresholdOfConsecutiveFailuresAndAnOkResetsTheCount) {
    Fixture f;
    EXPECT_TRUE(f.breaker.acquire(f.t0).allowed);
    EXPECT_FALSE(f.breaker.onFailure(f.t0));
    EXPECT_FALSE(f.breaker.onFailure(f.t0));
    EXPECT_FALSE(f.breaker.onSuccess()) << "still closed: no transition";
    EXPECT_FALSE(f.breaker.onFailure(f.t0));
    EXPECT_FALSE(f.breaker.onFailure(f.t0));
    EXPECT_EQ(f.breaker.state(), State::closed) << "the ok reset the count";
    EXPECT_TRUE(f.breaker.onFailure(f.t0));
    EXPECT_EQ(f.breaker.state(), State::open);
    const auto p = f.breaker.acquire(f.t0 + 10ms);
    EXPECT_FALSE(p.allowed);
    EXPECT_EQ(p.retry_at, f.t0 + 1000ms);
}

TEST(CircuitBreaker, AfterTheOpenTimeExactlyOneTrialAndItsResultDecides) {
    Fixture f;
    for (int i = 0; i < 3; ++i) f.breaker.onFailure(f.t0);
    EXPECT_FALSE(f.breaker.acquire(f.t0 + 999ms).allowed);
    const auto trial = f.breaker.acquire(f.t0 + 1000ms);
    EXPECT_TRUE(trial.allowed);
    EXPECT_TRUE(trial.trial);
    EXPECT_EQ(f.breaker.state(), State::half_open);
    EXPECT_FALSE(f.breaker.acquire(f.t0 + 1001ms).allowed) << "one trial at a time";

    // The trial fails: open again for a full period from now.
    EXPECT_TRUE(f.breaker.onFailure(f.t0 + 1100ms));
    EXPECT_EQ(f.breaker.state(), State::open);
    EXPECT_FALSE(f.breaker.acquire(f.t0 + 2000ms).allowed);
    const auto second = f.breaker.acquire(f.t0 + 2100ms);
    ASSERT_TRUE(second.trial);
    // It succeeds: closed, and everyone pulls again.
    EXPECT_TRUE(f.breaker.onSuccess());
    EXPECT_EQ(f.breaker.state(), State::closed);
    const auto p = f.breaker.acquire(f.t0 + 2101ms);
    EXPECT_TRUE(p.allowed);
    EXPECT_FALSE(p.trial);
}

TEST(CircuitBreaker, AnUnusedTrialGoesToTheNextWorker) {
    Fixture f;
    for (int i = 0; i < 3; ++i) f.breaker.onFailure(f.t0);
    ASSERT_TRUE(f.breaker.acquire(f.t0 + 1s).trial);
    f.breaker.trialUnused();  // the queue was empty
    EXPECT_TRUE(f.breaker.acquire(f.t0 + 1s).trial);
}

// An idle domain does not sit half-open: trials that found nothing for a
// whole open period close the breaker; within the period another may try.
TEST(CircuitBreaker, TrialsThatFindNothingForAPeriodCloseIt) {
    Fixture f;
    for (int i = 0; i < 3; ++i) f.breaker.onFailure(f.t0);
    ASSERT_TRUE(f.breaker.acquire(f.t0 + 1s).trial);
    EXPECT_FALSE(f.breaker.trialFoundNothing(f.t0 + 1s + 10ms));
    EXPECT_EQ(f.breaker.state(), State::half_open);
    ASSERT_TRUE(f.breaker.acquire(f.t0 + 1s + 20ms).trial) << "the next worker may try";
    EXPECT_TRUE(f.breaker.trialFoundNothing(f.t0 + 2s));
    EXPECT_EQ(f.breaker.state(), State::closed);
    const auto p = f.breaker.acquire(f.t0 + 2s);
    EXPECT_TRUE(p.allowed);
    EXPECT_FALSE(p.trial);
}

TEST(CircuitBreaker, JitterOnlyShortensTheOpenTime) {
    Fixture f;
    f.random = 0.999;
    for (int i = 0; i < 3; ++i) f.breaker.onFailure(f.t0);
    const auto p = f.breaker.acquire(f.t0);
    EXPECT_GE(p.retry_at, f.t0 + 800ms);
    EXPECT_LT(p.retry_at, f.t0 + 1000ms);
}

TEST(CircuitBreaker, LateFailuresWhileOpenDoNotExtendIt) {
    Fixture f;
    for (int i = 0; i < 3; ++i) f.breaker.onFailure(f.t0);
    EXPECT_FALSE(f.breaker.onFailure(f.t0 + 500ms));  // an item that was already in a handler
    EXPECT_TRUE(f.breaker.acquire(f.t0 + 1000ms).allowed);
}

}  // namespace
}  // namespace kanban::host::worker
