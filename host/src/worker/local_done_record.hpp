// The bounded local half of the idempotency record (docs/design.md §5): the ids
// this process completed most recently. It answers before the shared store
// is asked, and it still answers while NATS is down. Oldest ids are
// forgotten first. Thread-safe; shared by every worker of the process.
//
// It also knows which ids a handler of this process is running right now:
// a broker may hand an item to a second worker while the first still runs
// it (RabbitMQ requeues at once when a connection drops; JetStream after an
// expired ack wait), and the second must not run it concurrently.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

namespace kanban::host::worker {

class LocalDoneRecord {
public:
    explicit LocalDoneRecord(std::size_t capacity = 100'000) : capacity_(capacity == 0 ? 1 : capacity) {}

    bool contains(std::string_view id) const {  // no allocation: it runs for every item pulled
        std::lock_guard lock(mu_);
        return ids_.find(id) != ids_.end();
    }

    void insert(std::string_view id) {
        std::lock_guard lock(mu_);
        if (!ids_.emplace(id).second) return;
        order_.emplace_back(id);
        if (order_.size() > capacity_) {
            ids_.erase(order_.front());
            order_.pop_front();
        }
    }

    enum class Claim {
        claimed,  // this worker runs it
        running,  // another worker of this process runs it now
        done,     // completed since the caller last looked (a copy's run ended ok)
    };
    // Claims `id` for a handler run. Done and running are checked under one
    // lock: a copy whose run ends between the caller's contains() and this
    // call is reported done, never claimed for a second run.
    Claim begin(std::string_view id) {
        std::lock_guard lock(mu_);
        if (ids_.find(id) != ids_.end()) return Claim::done;
        return running_.emplace(id).second ? Claim::claimed : Claim::running;
    }
    // Ends the claim; `done` records the id as completed first, so there is
    // no moment in which it is neither running nor done.
    void end(std::string_view id, bool done) {
        if (done) insert(id);
        std::lock_guard lock(mu_);
        if (auto it = running_.find(id); it != running_.end()) running_.erase(it);
    }

    std::size_t size() const {
        std::lock_guard lock(mu_);
        return ids_.size();
    }

private:
    const std::size_t capacity_;
    mutable std::mutex mu_;
    // Transparent hashing, so string_views are looked up without a copy.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_set<std::string, Hash, std::equal_to<>> ids_;
    std::deque<std::string> order_;  // insertion order, for eviction
    std::unordered_set<std::string, Hash, std::equal_to<>> running_;
};

}  // namespace kanban::host::worker
