#include "pause/domain_pauses.hpp"

#include <spdlog/spdlog.h>

#include <vector>

#include "common/clock.hpp"

namespace kanban::host::pause {

bool DomainPauses::sync() {
    if (!store_.available()) return false;
    std::uint64_t writes_before = 0;
    {
        std::lock_guard lock(mu_);
        writes_before = writes_;
    }
    auto stored = store_.paused();
    if (!stored) {
        spdlog::debug("paused domains not read: {}", stored.message());
        return false;
    }
    // A set() since the read is newer than what was read: the next tick reads it.
    adopt([&](Paused& known) {
        if (writes_ != writes_before) return false;
        known = std::move(*stored);
        return true;
    });
    return true;
}

Result<bool> DomainPauses::set(const std::string& domain, bool paused) {
    if (!store_.available())
        return Error{"cannot " + std::string(paused ? "pause" : "resume") + " domain " + domain +
                     ": NATS, where the paused domains are kept for every host, is not reachable"};
    const auto now = nowUnixMs();
    auto changed = store_.set(domain, paused, now);
    if (!changed) return changed.error();
    adopt([&](Paused& known) {
        ++writes_;
        if (paused)
            known.emplace(domain, now);
        else
            known.erase(domain);
        return true;
    });
    return changed;
}

std::optional<std::int64_t> DomainPauses::pausedSince(const std::string& domain) const {
    std::lock_guard lock(mu_);
    auto it = known_.find(domain);
    if (it == known_.end()) return std::nullopt;
    return it->second;
}

void DomainPauses::adopt(const std::function<bool(Paused&)>& change) {
    std::lock_guard order(adopt_mu_);  // changes are applied in the order they were made
    std::vector<std::pair<std::string, bool>> changes;
    {
        std::lock_guard lock(mu_);
        Paused next = known_;
        if (!change(next)) return;
        for (const auto& [d, since] : next)
            if (!known_.count(d)) changes.emplace_back(d, true);
        for (const auto& [d, since] : known_)
            if (!next.count(d)) changes.emplace_back(d, false);
        known_ = std::move(next);
    }
    for (const auto& [d, p] : changes) {
        spdlog::info("domain={} {}", d, p ? "paused: its workers pull nothing until it is resumed" : "resumed");
        if (apply_) apply_(d, p);
    }
}

}  // namespace kanban::host::pause
