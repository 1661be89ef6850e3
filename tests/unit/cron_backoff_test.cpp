#include "scheduler/cron.hpp"
#include "worker/backoff.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kanban::host {
namespace {

using ::testing::HasSubstr;

TEST(Cron, ParsesStepsRangesAndLists) {
    auto r = scheduler::parseCron("*/15 9-17 1,15 * 1-5");
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(r->minutes.count(), 4u);
    EXPECT_TRUE(r->minutes.test(0) && r->minutes.test(45) && !r->minutes.test(50));
    EXPECT_EQ(r->hours.count(), 9u);
    EXPECT_TRUE(r->days_of_month.test(1) && r->days_of_month.test(15) && !r->days_of_month.test(2));
    EXPECT_EQ(r->months.count(), 12u);
    EXPECT_EQ(r->days_of_week.count(), 5u);
    EXPECT_TRUE(r->dom_restricted);
    EXPECT_TRUE(r->dow_restricted);
}

TEST(Cron, SundayIsZeroOrSeven) {
    auto r = scheduler::parseCron("0 0 * * 7");
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->days_of_week.test(0));
    EXPECT_EQ(r->days_of_week.count(), 1u);
    EXPECT_FALSE(r->dom_restricted);
}

TEST(Cron, RejectsBadExpressions) {
    EXPECT_THAT(scheduler::parseCron("61 * * * *").message(), HasSubstr("minute field '61'"));
    EXPECT_THAT(scheduler::parseCron("* * * * * *").message(), HasSubstr("must have 5 fields"));
    EXPECT_THAT(scheduler::parseCron("* * 0 * *").message(), HasSubstr("day-of-month"));
    EXPECT_THAT(scheduler::parseCron("* * * 13 *").message(), HasSubstr("month"));
    EXPECT_THAT(scheduler::parseCron("*/0 * * * *").message(), HasSubstr("step"));
    EXPECT_THAT(scheduler::parseCron("5-1 * * * *").message(), HasSubstr("range start is after its end"));
    EXPECT_THAT(scheduler::parseCron("a * * * *").message(), HasSubstr("not a number"));
    EXPECT_THAT(scheduler::parseCron("1,,2 * * * *").message(), HasSubstr("empty list element"));
}

TEST(Backoff, DoublesFromInitialUpToMax) {
    using std::chrono::milliseconds;
    EXPECT_EQ(worker::backoffDelay(1, 100, 30000, 0.0, 0.5), milliseconds(100));
    EXPECT_EQ(worker::backoffDelay(2, 100, 30000, 0.0, 0.5), milliseconds(200));
    EXPECT_EQ(worker::backoffDelay(5, 100, 30000, 0.0, 0.5), milliseconds(1600));
    EXPECT_EQ(worker::backoffDelay(9, 100, 30000, 0.0, 0.5), milliseconds(25600));
    EXPECT_EQ(worker::backoffDelay(10, 100, 30000, 0.0, 0.5), milliseconds(30000));
    EXPECT_EQ(worker::backoffDelay(1000, 100, 30000, 0.0, 0.5), milliseconds(30000));  // no overflow
}

TEST(Backoff, JitterOnlyShortensWithinTheFraction) {
    using std::chrono::milliseconds;
    EXPECT_EQ(worker::backoffDelay(3, 100, 30000, 0.2, 0.0), milliseconds(400));
    EXPECT_EQ(worker::backoffDelay(3, 100, 30000, 0.2, 1.0), milliseconds(320));
    EXPECT_EQ(worker::backoffDelay(3, 100, 30000, 0.2, 0.5), milliseconds(360));
    EXPECT_GE(worker::backoffDelay(1, 1, 1, 0.99, 1.0), milliseconds(1));
}

}  // namespace
}  // namespace kanban::host
