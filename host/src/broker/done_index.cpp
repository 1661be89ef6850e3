#include "broker/done_index.hpp"

#include <algorithm>
#include <bit>
#include <functional>

namespace kanban::host::broker {

DoneIndex::DoneIndex(std::size_t max_ids, std::int64_t ttl_ms)
    : per_generation_(std::max<std::size_t>(1, max_ids / kGenerations)), ttl_ns_(ttl_ms * 1'000'000) {}

std::uint64_t DoneIndex::hash(std::string_view id) noexcept {
    const std::uint64_t h = std::hash<std::string_view>{}(id);
    return h == 0 ? 1 : h;
}

DoneIndex::Generation& DoneIndex::current(std::uint64_t seq) {
    if (generations_.empty() || generations_.back().count >= per_generation_) {
        if (generations_.size() == kGenerations) {
            // Full: the oldest records are forgotten (not expired).
            size_ -= generations_.front().count;
            generations_.pop_front();
            forgotten_below_ = generations_.front().first_seq;
        }
        Generation g;
        g.slots.resize(std::bit_ceil(per_generation_ * 10 / 7 + 1));
        g.first_seq = seq;
        generations_.push_back(std::move(g));
    }
    return generations_.back();
}

void DoneIndex::insert(Generation& g, std::uint64_t h, std::uint64_t seq) {
    const std::size_t mask = g.slots.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
        if (g.slots[i].hash == 0) {
            g.slots[i] = {h, seq};
            ++g.count;
            ++size_;
            return;
        }
    }
}

void DoneIndex::add(std::uint64_t seq, std::int64_t stored_unix_ns, const std::vector<std::uint64_t>& hashes) {
    {
        std::lock_guard lock(mu_);
        // Generations whose newest record is past the TTL expired on the
        // server as well: nothing is forgotten by dropping them.
        while (!generations_.empty() && generations_.front().newest_unix_ns + ttl_ns_ < stored_unix_ns &&
               generations_.front().count > 0) {
            size_ -= generations_.front().count;
            generations_.pop_front();
        }
        for (std::uint64_t h : hashes) {
            Generation& g = current(seq);
            insert(g, h == 0 ? 1 : h, seq);
            g.newest_unix_ns = std::max(g.newest_unix_ns, stored_unix_ns);
        }
        applied_ = std::max(applied_, seq);
    }
    applied_cv_.notify_all();
}

std::vector<std::uint64_t> DoneIndex::candidates(std::uint64_t hash) const {
    if (hash == 0) hash = 1;
    std::vector<std::uint64_t> out;
    std::lock_guard lock(mu_);
    for (auto g = generations_.rbegin(); g != generations_.rend(); ++g) {
        const std::size_t mask = g->slots.size() - 1;
        for (std::size_t i = hash & mask; g->slots[i].hash != 0; i = (i + 1) & mask)
            if (g->slots[i].hash == hash) out.push_back(g->slots[i].seq);
    }
    std::sort(out.begin(), out.end(), std::greater<>());
    return out;
}

std::uint64_t DoneIndex::applied() const {
    std::lock_guard lock(mu_);
    return applied_;
}

bool DoneIndex::waitApplied(std::uint64_t seq, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return applied_cv_.wait_for(lock, timeout, [&] { return applied_ >= seq; });
}

std::uint64_t DoneIndex::forgottenBelow() const {
    std::lock_guard lock(mu_);
    return forgotten_below_;
}

std::size_t DoneIndex::size() const {
    std::lock_guard lock(mu_);
    return size_;
}

void DoneIndex::clear() {
    {
        std::lock_guard lock(mu_);
        generations_.clear();
        applied_ = 0;
        forgotten_below_ = 0;
        size_ = 0;
    }
    applied_cv_.notify_all();
}

}  // namespace kanban::host::broker
