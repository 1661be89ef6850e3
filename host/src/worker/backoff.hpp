// Retry delay: exponential with jitter.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace kanban::host::worker {

// Delay before attempt `attempt + 1`, after attempt `attempt` (1-based)
// failed: min(max_ms, initial_ms * 2^(attempt-1)), reduced by up to
// `jitter` (a fraction in [0, 1)) times `unit_random` (in [0, 1)) so that
// retries from many workers do not arrive in lockstep.
inline std::chrono::milliseconds backoffDelay(std::uint32_t attempt, std::int64_t initial_ms, std::int64_t max_ms,
                                              double jitter, double unit_random) {
    std::int64_t base = std::max<std::int64_t>(1, initial_ms);
    for (std::uint32_t i = 1; i < attempt && base < max_ms; ++i) base = base > max_ms / 2 ? max_ms : base * 2;
    base = std::min(base, max_ms);
    const double factor = 1.0 - std::clamp(jitter, 0.0, 0.99) * std::clamp(unit_random, 0.0, 1.0);
    return std::chrono::milliseconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(base) * factor)));
}

inline constexpr double kBackoffJitter = 0.2;

// Uniform in [0, 1), per thread.
inline double unitRandom() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace kanban::host::worker
