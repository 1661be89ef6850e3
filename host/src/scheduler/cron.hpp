// 5-field cron expressions: "minute hour day-of-month month day-of-week".
//
// Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`,
// or a comma-separated list of those. Day of week is 0-7 (0 and 7 = Sunday).
// Names (JAN, MON) and the non-standard `?`, `L`, `W`, `#` are not supported.
#pragma once

#include "common/result.hpp"

#include <bitset>
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

}  // namespace kanban::host::scheduler
