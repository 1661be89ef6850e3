// This process's half of the attempt records (broker::AttemptRecord): the
// charges for items that were in a handler when the previous process died
// (from the in-flight journal), and every record this host wrote, so that
// the count holds while the shared store cannot be reached (NATS down, the
// RabbitMQ path). The worker takes the larger of the two halves. Bounded:
// the oldest entries are forgotten first. Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "broker/attempt_record.hpp"

namespace kanban::host::worker {

class AttemptLedger {
public:
    explicit AttemptLedger(std::size_t capacity = 100'000) : capacity_(capacity == 0 ? 1 : capacity) {}

    std::optional<broker::AttemptRecord> find(std::string_view id) const {
        std::lock_guard lock(mu_);
        if (records_.empty()) return std::nullopt;  // the usual case: nothing failed
        auto it = records_.find(id);
        if (it == records_.end()) return std::nullopt;
        return it->second;
    }

    void put(std::string_view id, broker::AttemptRecord record) {
        std::lock_guard lock(mu_);
        auto [it, fresh] = records_.try_emplace(std::string(id), std::move(record));
        if (!fresh) {
            it->second = std::move(record);
            return;
        }
        order_.emplace_back(id);
        while (order_.size() > capacity_) {
            records_.erase(order_.front());
            order_.pop_front();
        }
    }

    void erase(std::string_view id) {
        std::lock_guard lock(mu_);
        if (records_.empty()) return;
        if (auto it = records_.find(id); it != records_.end()) records_.erase(it);
        // (its place in order_ goes when it reaches the front)
    }

    std::size_t size() const {
        std::lock_guard lock(mu_);
        return records_.size();
    }

private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    const std::size_t capacity_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, broker::AttemptRecord, Hash, std::equal_to<>> records_;
    std::deque<std::string> order_;
};

}  // namespace kanban::host::worker
