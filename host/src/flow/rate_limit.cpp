#include "flow/rate_limit.hpp"

#include <algorithm>
#include <charconv>

namespace kanban::host::flow {

std::optional<RateLimit> parseRateLimit(std::string_view text) {
    const auto trim = [](std::string_view s) {
        while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
        while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
        return s;
    };
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    const std::string_view count = trim(text.substr(0, slash));
    const std::string_view unit = trim(text.substr(slash + 1));
    RateLimit rate;
    const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), rate.count);
    if (ec != std::errc() || end != count.data() + count.size() || rate.count < 1 || rate.count > 1000000)
        return std::nullopt;
    if (unit == "s")
        rate.period_ms = 1000;
    else if (unit == "m")
        rate.period_ms = 60 * 1000;
    else if (unit == "h")
        rate.period_ms = 3600 * 1000;
    else
        return std::nullopt;
    return rate;
}

std::string toString(const RateLimit& rate) {
    const char* unit = rate.period_ms == 1000 ? "s" : rate.period_ms == 60 * 1000 ? "m" : "h";
    return std::to_string(rate.count) + "/" + unit;
}

Reservation reserveStart(std::int64_t tat, std::int64_t now, std::int64_t n, std::int64_t interval,
                         std::int64_t burst) {
    n = std::clamp<std::int64_t>(n, 1, std::max<std::int64_t>(burst, 1));
    // Item k of the n conforms at max(tat, now) + (k + 1 - burst) intervals;
    // the last one decides.
    const std::int64_t start = std::max(now, std::max(tat, now) + (n - burst) * interval);
    return {start, std::max(tat, start) + n * interval};
}

}  // namespace kanban::host::flow
