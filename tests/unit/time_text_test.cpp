// kanbanctl publish --delay / --at: what people type, and what is refused.
#include "common/time_text.hpp"

#include <gtest/gtest.h>

using kanban::host::parseDurationMs;
using kanban::host::formatRfc3339Ms;
using kanban::host::parseRfc3339Ms;

TEST(TimeText, DurationsHaveOneWholeNumberAndOneUnit) {
    EXPECT_EQ(parseDurationMs("1500ms"), 1500);
    EXPECT_EQ(parseDurationMs("30s"), 30000);
    EXPECT_EQ(parseDurationMs("5m"), 300000);
    EXPECT_EQ(parseDurationMs("2h"), 7200000);
    EXPECT_EQ(parseDurationMs("1d"), 86400000);
    EXPECT_EQ(parseDurationMs("0s"), 0);
    for (const char* bad : {"", "30", "s", "-5s", "1.5s", "30 s", "30sec", "5w", "99999999999d"})
        EXPECT_FALSE(parseDurationMs(bad)) << bad;
}

TEST(TimeText, Rfc3339TimesNeedTheirZone) {
    EXPECT_EQ(parseRfc3339Ms("1970-01-01T00:00:01Z"), 1000);
    EXPECT_EQ(parseRfc3339Ms("2026-12-24T18:00:00Z"), 1798135200000);
    EXPECT_EQ(parseRfc3339Ms("2026-12-24T19:00:00.250+01:00"), 1798135200250);
    EXPECT_EQ(parseRfc3339Ms("2026-12-24T13:30:00-04:30"), 1798135200000);
    EXPECT_EQ(parseRfc3339Ms("2026-12-24t18:00:00.5z"), 1798135200500);
    for (const char* bad : {"", "2026-12-24", "2026-12-24T18:00:00", "2026-12-24T18:00Z", "2026-13-01T00:00:00Z",
                            "2026-12-24T18:00:00+0100", "2026-12-24T18:00:00Z junk", "2026-12-24T18:00:00.Z"})
        EXPECT_FALSE(parseRfc3339Ms(bad)) << bad;
}

TEST(TimeText, FormattedTimesParseBack) {
    EXPECT_EQ(formatRfc3339Ms(1798135200250), "2026-12-24T18:00:00.250Z");
    for (std::int64_t t : {0LL, 1798135200250LL, 1700000000001LL})
        EXPECT_EQ(parseRfc3339Ms(formatRfc3339Ms(t)), t);
}
