#include "flow/rate_gate.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/clock.hpp"

namespace kanban::host::flow {

std::int64_t RateGate::reserve(std::int64_t n, const RateLimit& rate, std::int64_t burst, std::int64_t hosts) {
    const std::int64_t now = nowUnixNs() / 1000;
    if (store_) {
        auto start = store_->reserve(domain_, n, rate, burst);
        if (start) {
            if (on_own_) spdlog::info("rate_limit domain={}: the shared state is readable again", domain_);
            on_own_ = false;
            local_tat_us_ = 0;
            return *start;
        }
        if (!on_own_)
            spdlog::warn("rate_limit domain={}: the shared state cannot be read ({}); this host limits itself to "
                         "{} / {} hosts meanwhile", domain_, start.message(), toString(rate), hosts);
        on_own_ = true;
    }
    const std::int64_t interval = rate.intervalUs() * std::max<std::int64_t>(hosts, 1);
    const Reservation r = reserveStart(local_tat_us_, now, n, interval, burst);
    local_tat_us_ = r.tat_unix_us;
    return r.start_unix_us;
}

}  // namespace kanban::host::flow
