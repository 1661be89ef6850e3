// The outcome policy (worker/outcome_policy.hpp): what a handler's return
// does to the item, the metrics and the circuit breaker, as <kanban/plugin.h>
// promises it.
#include "worker/outcome_policy.hpp"

#include <gtest/gtest.h>

namespace kanban::host::worker {
namespace {

using metrics::DeadLetterReason;
using metrics::Outcome;

HandlerReturn ret(int status, std::uint32_t attempt = 1, bool overran = false, std::string_view reason = "") {
    HandlerReturn r;
    r.status = status;
    r.attempt = attempt;
    r.max_attempts = 3;
    r.overran = overran;
    r.reason = reason;
    return r;
}

TEST(OutcomePolicy, OkIsAckedAndCountsAsASuccess) {
    const Decision d = decide(ret(KANBAN_STATUS_OK));
    EXPECT_EQ(d.action, Action::ack);
    EXPECT_EQ(d.outcome, Outcome::ok);
    EXPECT_EQ(d.breaker, BreakerEffect::success);
}

TEST(OutcomePolicy, OkAfterTheDeadlineIsStillDoneButCountedAsATimeout) {
    const Decision d = decide(ret(KANBAN_STATUS_OK, 1, /*overran=*/true));
    EXPECT_EQ(d.action, Action::ack) << "running it again would repeat its effects";
    EXPECT_EQ(d.outcome, Outcome::timeout);
    EXPECT_EQ(d.breaker, BreakerEffect::success);
}

TEST(OutcomePolicy, RetryIsRetriedUntilTheLastAttemptThenDeadLettered) {
    Decision d = decide(ret(KANBAN_STATUS_RETRY, 1, false, "partner down"));
    EXPECT_EQ(d.action, Action::retry);
    EXPECT_EQ(d.outcome, Outcome::retry);
    EXPECT_EQ(d.breaker, BreakerEffect::failure);
    EXPECT_EQ(d.reason, "partner down");
    d = decide(ret(KANBAN_STATUS_RETRY, 3));
    EXPECT_EQ(d.action, Action::dead_letter);
    EXPECT_EQ(d.dead_letter_reason, DeadLetterReason::retries_exhausted);
    EXPECT_EQ(d.reason, "retry") << "a retry without a reason is named";
    EXPECT_EQ(d.breaker, BreakerEffect::failure);
}

// plugin.h: fail is permanent (the item is bad, not the station): it is
// dead-lettered at once and does not count against the circuit breaker,
// so a few malformed payments never stop the payment line.
TEST(OutcomePolicy, FailIsDeadLetteredAtOnceAndLeavesTheBreakerAlone) {
    const Decision d = decide(ret(KANBAN_STATUS_FAIL, 1, false, "malformed"));
    EXPECT_EQ(d.action, Action::dead_letter);
    EXPECT_EQ(d.dead_letter_reason, DeadLetterReason::handler_failed);
    EXPECT_EQ(d.outcome, Outcome::fail);
    EXPECT_EQ(d.breaker, BreakerEffect::none);
    EXPECT_EQ(d.reason, "malformed");
}

TEST(OutcomePolicy, RetryOrFailAfterTheDeadlineIsATimeoutRetriedLikeOne) {
    for (int status : {KANBAN_STATUS_RETRY, KANBAN_STATUS_FAIL}) {
        Decision d = decide(ret(status, 1, /*overran=*/true, "cancelled"));
        EXPECT_EQ(d.action, Action::retry) << status;
        EXPECT_EQ(d.outcome, Outcome::timeout);
        EXPECT_EQ(d.breaker, BreakerEffect::failure);
        EXPECT_EQ(d.reason, "timeout");
        d = decide(ret(status, 3, /*overran=*/true));
        EXPECT_EQ(d.action, Action::dead_letter);
        EXPECT_EQ(d.dead_letter_reason, DeadLetterReason::retries_exhausted);
    }
}

// plugin.h: cancelled() turns true on shutdown too; what the handler then
// returns (short of ok) hands the item back for another worker, and is
// neither a failure nor an attempt's verdict.
TEST(OutcomePolicy, AHandlerStoppedForTheShutdownHandsItsItemBack) {
    for (int status : {KANBAN_STATUS_RETRY, KANBAN_STATUS_FAIL}) {
        HandlerReturn r = ret(status, 3, /*overran=*/false, "cancelled");
        r.cancelled_by_stop = true;
        const Decision d = decide(r);
        EXPECT_EQ(d.action, Action::release) << status;
        EXPECT_EQ(d.breaker, BreakerEffect::none);
    }
    HandlerReturn finished = ret(KANBAN_STATUS_OK);
    finished.cancelled_by_stop = true;
    EXPECT_EQ(decide(finished).action, Action::ack) << "a handler that finished anyway is done";
}

TEST(OutcomePolicy, AnUndefinedStatusIsABrokenPluginDeadLetteredAndAFailure) {
    const Decision d = decide(ret(7));
    EXPECT_EQ(d.action, Action::dead_letter);
    EXPECT_EQ(d.breaker, BreakerEffect::failure);
    EXPECT_EQ(d.reason, "plugin returned invalid status 7");
}

}  // namespace
}  // namespace kanban::host::worker
