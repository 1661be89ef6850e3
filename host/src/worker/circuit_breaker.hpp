// Jidoka for one domain: after `failure_threshold` consecutive handler
// failures (retry, fail, timeout; an ok resets the count) the breaker opens
// and the domain's workers stop pulling, so its items wait in the broker.
// After `open_for` (shortened by up to `jitter` so that several hosts do not
// probe in lockstep) one worker may take a single trial item (half-open):
// ok closes the breaker, a failure opens it again. Thread-safe; the clock is
// passed in so the state machine can be tested without sleeping.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

namespace kanban::host::worker {

class CircuitBreaker {
public:
    using Clock = std::chrono::steady_clock;
    enum class State { closed = 0, half_open = 1, open = 2 };  // the kanban_circuit_state values

    struct Permit {
        bool allowed = false;
        bool trial = false;               // take a single item, and report its outcome
        Clock::time_point retry_at{};     // when not allowed: ask again then
    };

    // `unit_random` returns values in [0, 1) (the jitter source).
    CircuitBreaker(std::int64_t failure_threshold, std::chrono::milliseconds open_for, double jitter,
                   std::function<double()> unit_random)
        : threshold_(failure_threshold < 1 ? 1 : failure_threshold),
          open_for_(open_for),
          jitter_(jitter),
          random_(std::move(unit_random)) {}

    // May a worker pull now?
    Permit acquire(Clock::time_point now) {
        std::lock_guard lock(mu_);
        switch (state_) {
            case State::closed: return {true, false, {}};
            case State::open:
                if (now < reopen_at_) return {false, false, reopen_at_};
                state_ = State::half_open;
                half_open_since_ = now;
                trial_taken_ = true;
                return {true, true, {}};
            case State::half_open:
                if (trial_taken_) return {false, false, now + std::chrono::milliseconds(50)};
                trial_taken_ = true;
                return {true, true, {}};
        }
        return {};
    }

    // New settings (hot reload); they apply from the next failure or opening.
    void configure(std::int64_t failure_threshold, std::chrono::milliseconds open_for) {
        std::lock_guard lock(mu_);
        threshold_ = failure_threshold < 1 ? 1 : failure_threshold;
        open_for_ = open_for;
    }

    // The trial permit found no item: another worker may try.
    void trialUnused() {
        std::lock_guard lock(mu_);
        if (state_ == State::half_open) trial_taken_ = false;
    }

    // The trial found the queue empty. Once trials have found nothing for
    // a whole open period, nothing waits to fail (items handed back at the
    // opening come back within one): the line runs again, so an idle
    // domain does not sit half-open. Items that fail later open it again.
    // Before that, another trial may try. True when the state changed.
    bool trialFoundNothing(Clock::time_point now) {
        std::lock_guard lock(mu_);
        if (state_ != State::half_open) return false;
        if (now - half_open_since_ < open_for_) {
            trial_taken_ = false;
            return false;
        }
        state_ = State::closed;
        failures_ = 0;
        trial_taken_ = false;
        return true;
    }

    // Returns true when this call changed the state (for logging and counting).
    bool onSuccess() {
        std::lock_guard lock(mu_);
        failures_ = 0;
        if (state_ == State::closed) return false;
        state_ = State::closed;
        trial_taken_ = false;
        return true;
    }

    bool onFailure(Clock::time_point now) {
        std::lock_guard lock(mu_);
        ++failures_;
        if (state_ == State::open) return false;  // a late result from before it opened
        if (state_ == State::closed && failures_ < threshold_) return false;
        state_ = State::open;
        trial_taken_ = false;
        const double factor = 1.0 - jitter_ * random_();
        reopen_at_ = now + std::chrono::duration_cast<Clock::duration>(open_for_ * factor);
        return true;
    }

    State state() const {
        std::lock_guard lock(mu_);
        return state_;
    }

    static std::string_view name(State s) {
        switch (s) {
            case State::closed: return "closed";
            case State::half_open: return "half_open";
            case State::open: return "open";
        }
        return "?";
    }

private:
    std::int64_t threshold_;               // mu_
    std::chrono::milliseconds open_for_;   // mu_
    Clock::time_point half_open_since_{};  // mu_
    const double jitter_;
    std::function<double()> random_;
    mutable std::mutex mu_;
    State state_ = State::closed;
    std::int64_t failures_ = 0;
    bool trial_taken_ = false;
    Clock::time_point reopen_at_{};
};

}  // namespace kanban::host::worker
