// 5-field cron expressions: "minute hour day-of-month month day-of-week".
//
// Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`,
// or a comma-separated list of those. Day of week is 0-7 (0 and 7 = Sunday).
// Names (JAN, MON) and the non-standard `?`, `L`, `W`, `#` are not supported.
#pragma once

#include "common/result.hpp"

#include <bitset>
#include <cstdint>
#include <optional>
#include <string_view>

namespace kanban::host::scheduler {

struct CronExpr {
    std::bitset<60> minutes;
    std::bitset<24> hours;
    std::bitset<32> days_of_month;  // 1..31
    std::bitset<13> months;         // 1..12
    std::bitset<7> days_of_week;    // 0..6, Sunday = 0
    bool dom_restricted = false;    // field was not `*`
    bool dow_restricted = false;
};

// Parses `expr`; the error names the offending field.
Result<CronExpr> parseCron(std::string_view expr);

// The first whole minute strictly after `after_unix_s` that matches, as Unix
// seconds. Expressions are evaluated in UTC (no DST gaps or repeats). When
// both day-of-month and day-of-week are restricted, either may match (as in
// Vixie cron). nullopt when nothing matches within 8 years (e.g. "0 0 30 2 *").
std::optional<std::int64_t> nextFire(const CronExpr& expr, std::int64_t after_unix_s);

}  // namespace kanban::host::scheduler
