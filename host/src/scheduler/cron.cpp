#include "scheduler/cron.hpp"

#include <charconv>
#include <ctime>
#include <string>
#include <vector>

namespace kanban::host::scheduler {
namespace {

struct FieldSpec {
    const char* name;
    int min;
    int max;
};

constexpr FieldSpec kFields[5] = {
    {"minute", 0, 59}, {"hour", 0, 23}, {"day-of-month", 1, 31}, {"month", 1, 12}, {"day-of-week", 0, 7}};

std::vector<std::string_view> split(std::string_view s, char sep, bool skip_empty) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        std::size_t end = s.find(sep, start);
        if (end == std::string_view::npos) end = s.size();
        std::string_view part = s.substr(start, end - start);
        if (!part.empty() || !skip_empty) out.push_back(part);
        start = end + 1;
    }
    return out;
}

bool parseInt(std::string_view s, int& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

// Sets the bits of one field; returns an error text or "".
std::string parseField(std::string_view text, const FieldSpec& spec, std::vector<bool>& bits) {
    auto bad = [&](std::string_view why) {
        return std::string(spec.name) + " field '" + std::string(text) + "': " + std::string(why);
    };
    for (std::string_view item : split(text, ',', false)) {
        if (item.empty()) return bad("empty list element");
        int step = 1;
        if (auto slash = item.find('/'); slash != std::string_view::npos) {
            if (!parseInt(item.substr(slash + 1), step) || step < 1) return bad("step must be a positive number");
            item = item.substr(0, slash);
        }
        int lo = spec.min, hi = spec.max;
        if (item == "*") {
        } else if (auto dash = item.find('-'); dash != std::string_view::npos) {
            if (!parseInt(item.substr(0, dash), lo) || !parseInt(item.substr(dash + 1), hi))
                return bad("range bounds must be numbers");
            if (lo > hi) return bad("range start is after its end");
        } else {
            if (!parseInt(item, lo)) return bad("not a number");
            if (text.find('/') == std::string_view::npos) hi = lo;  // "5" alone; "5/10" runs to max
        }
        if (lo < spec.min || hi > spec.max)
            return bad("value out of range " + std::to_string(spec.min) + "-" + std::to_string(spec.max));
        for (int v = lo; v <= hi; v += step) bits[static_cast<std::size_t>(v)] = true;
    }
    return {};
}

}  // namespace

Result<CronExpr> parseCron(std::string_view expr) {
    const auto fields = split(expr, ' ', true);
    if (fields.size() != 5)
        return Error{"cron expression '" + std::string(expr) + "' must have 5 fields (minute hour day-of-month "
                     "month day-of-week), found " + std::to_string(fields.size())};
    CronExpr out;
    for (std::size_t i = 0; i < 5; ++i) {
        std::vector<bool> bits(static_cast<std::size_t>(kFields[i].max) + 1, false);
        if (std::string err = parseField(fields[i], kFields[i], bits); !err.empty())
            return Error{"cron expression '" + std::string(expr) + "': " + err};
        for (std::size_t v = 0; v < bits.size(); ++v) {
            if (!bits[v]) continue;
            switch (i) {
                case 0: out.minutes.set(v); break;
                case 1: out.hours.set(v); break;
                case 2: out.days_of_month.set(v); break;
                case 3: out.months.set(v); break;
                case 4: out.days_of_week.set(v % 7); break;
            }
        }
    }
    out.dom_restricted = fields[2] != "*";
    out.dow_restricted = fields[4] != "*";
    return out;
}

std::optional<std::int64_t> nextFire(const CronExpr& e, std::int64_t after_unix_s) {
    // Walk forward, skipping a whole month, day or hour whenever that part
    // cannot match: at most a few thousand steps for 8 years.
    std::int64_t t = (after_unix_s / 60 + 1) * 60;
    const std::int64_t limit = after_unix_s + 8LL * 366 * 24 * 3600;
    while (t <= limit) {
        const std::time_t tt = static_cast<std::time_t>(t);
        std::tm tm{};
        gmtime_r(&tt, &tm);
        auto startOf = [&](int mon_add, int day_add, int hour_add) {
            std::tm next = tm;
            next.tm_sec = 0;
            next.tm_min = 0;
            if (mon_add != 0) {
                next.tm_mon += mon_add;
                next.tm_mday = 1;
                next.tm_hour = 0;
            } else if (day_add != 0) {
                next.tm_mday += day_add;
                next.tm_hour = 0;
            } else {
                next.tm_hour += hour_add;
            }
            return static_cast<std::int64_t>(timegm(&next));
        };
        if (!e.months.test(static_cast<std::size_t>(tm.tm_mon + 1))) {
            t = startOf(1, 0, 0);
            continue;
        }
        const bool dom = e.days_of_month.test(static_cast<std::size_t>(tm.tm_mday));
        const bool dow = e.days_of_week.test(static_cast<std::size_t>(tm.tm_wday));
        const bool day = (e.dom_restricted && e.dow_restricted) ? (dom || dow) : (dom && dow);
        if (!day) {
            t = startOf(0, 1, 0);
            continue;
        }
        if (!e.hours.test(static_cast<std::size_t>(tm.tm_hour))) {
            t = startOf(0, 0, 1);
            continue;
        }
        if (!e.minutes.test(static_cast<std::size_t>(tm.tm_min))) {
            t += 60;
            continue;
        }
        return t;
    }
    return std::nullopt;
}

}  // namespace kanban::host::scheduler
