#include "scheduler/cron.hpp"
#include "worker/backoff.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <string>

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

namespace kanban::host {
namespace {

// "2026-11-29 12:07" (UTC) ↔ Unix seconds.
std::int64_t utc(const char* text) {
    std::tm tm{};
    std::sscanf(text, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<std::int64_t>(timegm(&tm));
}

std::string utcText(std::int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
    return buf;
}

struct NextFireCase {
    const char* expr;
    const char* after;
    const char* expected;  // "" = never
};

class CronNextFire : public ::testing::TestWithParam<NextFireCase> {};

TEST_P(CronNextFire, IsTheFirstMatchingMinuteStrictlyAfter) {
    const auto& c = GetParam();
    auto e = scheduler::parseCron(c.expr);
    ASSERT_TRUE(e.ok()) << e.message();
    const auto next = scheduler::nextFire(*e, utc(c.after));
    if (std::string(c.expected).empty()) {
        EXPECT_FALSE(next.has_value()) << utcText(*next);
    } else {
        ASSERT_TRUE(next.has_value());
        EXPECT_EQ(utcText(*next), c.expected) << c.expr << " after " << c.after;
    }
}

INSTANTIATE_TEST_SUITE_P(
    Table, CronNextFire,
    ::testing::Values(
        NextFireCase{"*/15 * * * *", "2026-11-29 12:07", "2026-11-29 12:15"},
        NextFireCase{"*/15 * * * *", "2026-11-29 12:15", "2026-11-29 12:30"},  // strictly after
        NextFireCase{"*/15 * * * *", "2026-11-29 23:59", "2026-11-30 00:00"},
        NextFireCase{"5-10/2 * * * *", "2026-11-29 12:06", "2026-11-29 12:07"},
        NextFireCase{"5-10/2 * * * *", "2026-11-29 12:10", "2026-11-29 13:05"},
        NextFireCase{"0 0 1 * *", "2026-01-31 12:00", "2026-02-01 00:00"},
        NextFireCase{"0 0 31 * *", "2026-02-01 00:00", "2026-03-31 00:00"},   // February and its 28 days skipped
        NextFireCase{"0 0 31 * *", "2026-03-31 00:00", "2026-05-31 00:00"},   // April has 30
        NextFireCase{"0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"},   // the next leap year
        NextFireCase{"59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"},
        NextFireCase{"30 9 * * 1-5", "2026-11-27 10:00", "2026-11-30 09:30"},  // Friday after 9:30 → Monday
        NextFireCase{"0 0 * * 0", "2026-11-29 00:00", "2026-12-06 00:00"},     // Sunday = 0
        NextFireCase{"0 0 * * 7", "2026-11-29 00:00", "2026-12-06 00:00"},     // Sunday = 7
        NextFireCase{"0 12 1 * 0", "2026-11-29 12:00", "2026-12-01 12:00"},    // day-of-month OR day-of-week
        NextFireCase{"0 12 1 * 0", "2026-12-01 12:00", "2026-12-06 12:00"},
        NextFireCase{"0 0 30 2 *", "2026-01-01 00:00", ""}));                  // 30 February never comes

}  // namespace
}  // namespace kanban::host
