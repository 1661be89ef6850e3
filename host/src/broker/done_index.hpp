// The local index of the done log (docs/design.md §5): which records of the
// `<stream>_DONE` bucket hold a given work id. Each host builds it from the
// bucket's own stream (broker/done_mirror), so a lookup needs no request
// per item: a miss is an answer once the index has applied every record up
// to the bucket's last sequence; a hit names the records to read and check
// (hashes collide; the record is the truth).
//
// Memory is bounded: ids live in generations of fixed-size open-addressing
// tables of (hash, record sequence), 16 bytes a slot. A generation that
// is older than the bucket's TTL is dropped (its records expired too); when
// `max_ids` are held, the oldest generation is dropped and the records
// below `forgottenBelow()` are no longer known (logged and counted by the
// caller).
//
// Thread-safe: the mirror's thread adds, every worker finds.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string_view>
#include <vector>

namespace kanban::host::broker {

class DoneIndex {
public:
    static constexpr std::size_t kGenerations = 8;

    explicit DoneIndex(std::size_t max_ids, std::int64_t ttl_ms);

    static std::uint64_t hash(std::string_view id) noexcept;

    // A record of the log: its stream sequence, when it was stored, and the
    // hashes of the ids it holds (may be empty: the sequence still counts).
    void add(std::uint64_t seq, std::int64_t stored_unix_ns, const std::vector<std::uint64_t>& hashes);

    // The records that may hold an id with this hash, newest first.
    std::vector<std::uint64_t> candidates(std::uint64_t hash) const;

    // The highest sequence applied so far (0: none).
    std::uint64_t applied() const;
    // Waits until applied() >= seq; false after `timeout`.
    bool waitApplied(std::uint64_t seq, std::chrono::milliseconds timeout) const;

    // Records below this sequence were dropped to stay within max_ids (0: none).
    std::uint64_t forgottenBelow() const;
    std::size_t size() const;
    // Forgets everything (the bucket's stream was created anew).
    void clear();

private:
    struct Slot {
        std::uint64_t hash = 0;  // 0: empty (a hash of 0 is stored as 1)
        std::uint64_t seq = 0;
    };
    struct Generation {
        std::vector<Slot> slots;  // a power of two, at most 70 % full
        std::size_t count = 0;
        std::uint64_t first_seq = 0;
        std::int64_t newest_unix_ns = 0;
    };
    void insert(Generation& g, std::uint64_t h, std::uint64_t seq);
    Generation& current(std::uint64_t seq);

    const std::size_t per_generation_;
    const std::int64_t ttl_ns_;
    mutable std::mutex mu_;
    mutable std::condition_variable applied_cv_;
    std::deque<Generation> generations_;  // oldest first
    std::uint64_t applied_ = 0;
    std::uint64_t forgotten_below_ = 0;
    std::size_t size_ = 0;
};

}  // namespace kanban::host::broker
