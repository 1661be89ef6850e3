#include "worker/outcome_policy.hpp"

namespace kanban::host::worker {
namespace {

Decision retryOrDeadLetter(const HandlerReturn& r, metrics::Outcome outcome, std::string reason) {
    Decision d;
    d.outcome = outcome;
    d.breaker = BreakerEffect::failure;
    d.reason = std::move(reason);
    if (static_cast<std::int64_t>(r.attempt) >= r.max_attempts) {
        d.action = Action::dead_letter;
        d.dead_letter_reason = metrics::DeadLetterReason::retries_exhausted;
    } else {
        d.action = Action::retry;
    }
    return d;
}

}  // namespace

Decision decide(const HandlerReturn& r) {
    if (r.status == KANBAN_STATUS_OK) {
        // Done, even if late: running it again would repeat its effects.
        return Decision{Action::ack, r.overran ? metrics::Outcome::timeout : metrics::Outcome::ok,
                        BreakerEffect::success, metrics::DeadLetterReason::handler_failed, ""};
    }
    if (r.cancelled_by_stop) {
        // Stopped by the host, not failed: back to the queue for the next worker.
        return Decision{Action::release, metrics::Outcome::retry, BreakerEffect::none,
                        metrics::DeadLetterReason::handler_failed, "cancelled by shutdown"};
    }
    // A failure after the deadline is most likely the cancellation itself:
    // a timeout, retried like one.
    if (r.overran && (r.status == KANBAN_STATUS_RETRY || r.status == KANBAN_STATUS_FAIL))
        return retryOrDeadLetter(r, metrics::Outcome::timeout, "timeout");
    if (r.status == KANBAN_STATUS_RETRY)
        return retryOrDeadLetter(r, metrics::Outcome::retry, r.reason.empty() ? "retry" : std::string(r.reason));
    if (r.status == KANBAN_STATUS_FAIL)
        return Decision{Action::dead_letter, metrics::Outcome::fail, BreakerEffect::none,
                        metrics::DeadLetterReason::handler_failed, r.reason.empty() ? "fail" : std::string(r.reason)};
    return Decision{Action::dead_letter, metrics::Outcome::fail, BreakerEffect::failure,
                    metrics::DeadLetterReason::handler_failed,
                    "plugin returned invalid status " + std::to_string(r.status)};
}

}  // namespace kanban::host::worker
