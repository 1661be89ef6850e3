// `[[domain]] rate_limit = "50/s"` with `rate_burst = B`: the domain's
// handlers, on every host together, start at most that many items per
// period, evenly spaced, with at most B starting at once.
//
// The rule is GCRA (the generic cell rate algorithm): one "theoretical
// arrival time" (TAT) per domain, kept where every host sees it
// (broker::JetStreamRates: NATS KV, changed by compare-and-set). A host
// that has fetched n items (n <= B) reserves their start time from it;
// the reservation is never refused, it may only lie in the future.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace kanban::host::flow {

struct RateLimit {
    std::int64_t count = 0;      // items ...
    std::int64_t period_ms = 0;  // ... per period; count 0 = no limit
    explicit operator bool() const { return count > 0; }
    // The spacing of starts: period / count.
    std::int64_t intervalUs() const { return period_ms * 1000 / count; }
    bool operator==(const RateLimit&) const = default;
};

// "50/s", "600/m", "1000/h" (spaces allowed around '/'); nullopt when
// malformed or the count is not in 1..1,000,000.
std::optional<RateLimit> parseRateLimit(std::string_view text);
std::string toString(const RateLimit& rate);

struct Reservation {
    std::int64_t start_unix_us = 0;  // the n items may start from then on
    std::int64_t tat_unix_us = 0;    // the TAT to store
};

// GCRA for n items at once (1 <= n <= burst) at `now`: they start when the
// last of them conforms, and the TAT moves n intervals past that.
Reservation reserveStart(std::int64_t tat_unix_us, std::int64_t now_unix_us, std::int64_t n,
                         std::int64_t interval_us, std::int64_t burst);

class RateStore {
public:
    virtual ~RateStore() = default;
    // Reserves the start of `n` items of `domain` (see reserveStart) and
    // returns when they may start. An error: the store cannot answer (the
    // caller keeps the items and asks again).
    virtual Result<std::int64_t> reserve(const std::string& domain, std::int64_t n, const RateLimit& rate,
                                         std::int64_t burst) = 0;
};

}  // namespace kanban::host::flow
