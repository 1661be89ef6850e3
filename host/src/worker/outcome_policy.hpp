// What happens to an item once its handler returned: the one place where
// a status, an overrun and the attempt count become an action on the
// broker, an outcome for the metrics and an effect on the circuit breaker
// (the rules <kanban/plugin.h> promises to plugin authors).
//
//   status          overran  cancelled  -> action                        metric   breaker
//   ok              any      any           ack (done, even if late)       ok/timeout success
//   any but ok      any      by stop       release (redelivered at once)  retry    none
//   retry           no       -             retry, or dead-letter when     retry    failure
//                                          attempt >= max_attempts
//   retry or fail   yes      -             same as retry, reason timeout  timeout  failure
//   fail            no       -             dead-letter (handler_failed)   fail     none
//   invalid         -        -             dead-letter (handler_failed)   fail     failure
//
// `fail` says the item is bad (a malformed payment), not the station: it
// is dead-lettered and does not count against the breaker. `retry` and
// timeouts say the station (or what it calls) is in trouble. A plugin that
// returns an undefined status is broken, which is the station's fault.
#pragma once

#include <kanban/plugin.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "metrics/metrics.hpp"

namespace kanban::host::worker {

struct HandlerReturn {
    int status = KANBAN_STATUS_FAIL;  // as the plugin returned it (maybe invalid)
    std::string_view reason;          // the plugin's text, may be empty
    bool overran = false;             // returned after its deadline
    bool cancelled_by_stop = false;   // the host asked it to stop (shutdown)
    std::uint32_t attempt = 1;
    std::int64_t max_attempts = 5;
    std::int64_t retry_after_ms = -1;  // ABI 1.1: the delay the handler chose for a retry (-1: the backoff)
};

enum class Action { ack, retry, dead_letter, release };
enum class BreakerEffect { success, failure, none };

struct Decision {
    Action action = Action::dead_letter;
    metrics::Outcome outcome = metrics::Outcome::fail;
    BreakerEffect breaker = BreakerEffect::none;
    metrics::DeadLetterReason dead_letter_reason = metrics::DeadLetterReason::handler_failed;
    std::string reason;  // for the log, the retry and the dead letter
};

Decision decide(const HandlerReturn& r);

}  // namespace kanban::host::worker
