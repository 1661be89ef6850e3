// The domains an operator paused, as this host knows them: read from the
// shared PauseStore at start and on every coordinator tick, written
// through it by the admin API. A paused domain's workers pull nothing
// (items wait in the broker; items already in hand finish); its publishes
// go on. When the store cannot be read, the last known state stays.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "pause/pause_store.hpp"

namespace kanban::host::pause {

class DomainPauses {
public:
    // `apply` is told each change (domain, paused), on the thread that
    // found it; it must be cheap (it sets a flag on the domain's pool).
    using Apply = std::function<void(const std::string& domain, bool paused)>;
    DomainPauses(PauseStore& store, Apply apply) : store_(store), apply_(std::move(apply)) {}

    // Reads the store and applies what changed. False (and nothing
    // changes) when it could not be read.
    bool sync();
    // Pauses or resumes through the store, and here at once (the other
    // hosts follow at their next tick). True if the stored state changed.
    Result<bool> set(const std::string& domain, bool paused);
    // Since when `domain` is paused (Unix ms), or nullopt.
    std::optional<std::int64_t> pausedSince(const std::string& domain) const;
    bool paused(const std::string& domain) const { return pausedSince(domain).has_value(); }

private:
    // Runs `change` on a copy of the known state under mu_ (false: keep
    // it as is), then applies the differences.
    void adopt(const std::function<bool(Paused&)>& change);

    PauseStore& store_;
    const Apply apply_;
    mutable std::mutex mu_;
    Paused known_;               // mu_
    std::uint64_t writes_ = 0;   // mu_: set() calls, so that a sync that read before one does not undo it
    std::mutex adopt_mu_;        // one adopt() at a time (taken before mu_)
};

}  // namespace kanban::host::pause
