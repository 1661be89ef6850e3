// The channel between kanband and one runner process (isolation =
// "process"): a stream socket for batches and a shared memory block for
// what must be readable without a message, even after the runner died.
//
// Per batch, the host writes one Batch frame (every item of it) and the
// runner answers with one BatchDone frame after the last item: no system
// call per item in either direction. While the batch runs, the runner
// publishes in shared memory which item is in its handler (and since when,
// until when) and each result as it is produced; the host reads that to
// enforce deadlines, to refresh the items' leases and, when the runner
// dies, to know exactly which items finished, which one was in the handler
// (it is charged) and which never started (they are not).
//
//   host -> runner: Hello {domain, plugin path, settings JSON}   once
//   runner -> host: Ready {name, version} | Failed {message}     once
//   host -> runner: Batch {timeout_ms, items (with their headers)...}  per batch
//   runner -> host: FollowUps {item index, follow-ups...}        per item that returned
//                   ok with follow-ups, written before its result is final
//   runner -> host: BatchDone {}                                 per batch
//   host -> runner: Quit: the runner calls destroy() and exits 0.
//   kanband gone (its end of the socket closed): the runner exits at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/headers.hpp"
#include "common/result.hpp"
#include "plugin/host_api.hpp"

namespace kanban::host::runner {

// The runner's end of the socket and the shared memory, as set up by spawn.
inline constexpr int kSocketFd = 3;
inline constexpr int kSharedFd = 4;
// The argument that starts kanband as a runner.
inline constexpr std::string_view kRunnerFlag = "--runner";

inline constexpr std::size_t kMaxBatch = 1000;  // workers.pull_batch's upper bound
inline constexpr std::size_t kReasonBytes = 512;

enum class ItemState : std::uint32_t {
    pending = 0,  // not reached (yet)
    ran = 1,      // the handler returned: status, reason, times are set
    expired = 2,  // its deadline had passed before it could start: not called
    skipped = 3,  // the host asked for no more items (stop, open breaker, retirement): not called
};

struct ItemResult {
    std::atomic<std::uint32_t> state;  // ItemState; written last (release)
    std::int32_t status;
    std::int64_t retry_after_ms;  // as the handler set it (-1: none)
    std::uint32_t follow_ups;     // ok with this many follow-ups, in a FollowUps frame sent before `state`
    std::int64_t started_ns, ended_ns, deadline_ns;  // steady clock (CLOCK_MONOTONIC: the same in both processes)
    char reason[kReasonBytes];
};

// Why a runner asks to be replaced after its batch.
enum class Retire : std::uint32_t { no = 0, memory = 1, recycle = 2 };

struct Shared {
    // runner -> host
    std::atomic<std::uint32_t> current;          // 1 + index of the item in its handler; 0 = none
    std::atomic<std::int64_t> current_started_ns;   // written before `current`
    std::atomic<std::int64_t> current_deadline_ns;  // written before `current`
    std::atomic<std::uint32_t> completed;        // results[0, completed) are final
    std::atomic<std::uint32_t> progress;         // bumped by kanban_host_api.progress()
    std::atomic<std::uint32_t> retire;           // Retire
    std::atomic<std::int64_t> rss_kib;           // after the last item, when memory_max_mb is set
    // host -> runner
    std::atomic<std::uint32_t> stop;    // start no more items of this batch
    std::atomic<std::uint32_t> cancel;  // cancelled() is true for the item in the handler
    ItemResult results[kMaxBatch];
};

// One item as it crosses the socket. Views: into the host's deliveries
// when encoding, into the received frame when decoding (there the id is
// followed by a NUL, as kanban_work_item promises).
struct WireItem {
    std::string_view id;
    std::string_view payload;
    std::uint32_t priority = 1;
    std::uint32_t attempt = 1;
    std::int64_t deadline_unix_ms = 0;
    Headers headers;  // the item's own, with the attempt's traceparent
};

struct BatchHeader {
    std::int64_t timeout_ms = 0;
    std::int64_t memory_max_kib = 0;       // 0: no limit
    std::int64_t recycle_after_items = 0;  // 0: never
};

enum class FrameType : std::uint32_t {
    hello = 1, ready = 2, failed = 3, batch = 4, batch_done = 5, quit = 6, follow_ups = 7
};

// Encodes a frame: type, length, body (little-endian host order: both ends
// are the same binary).
std::string frame(FrameType type, std::string_view body);
std::string encodeStrings(const std::vector<std::string_view>& parts);
Result<std::vector<std::string>> decodeStrings(std::string_view body, std::size_t count);
std::string encodeBatch(const BatchHeader& header, const std::vector<WireItem>& items);
Result<std::vector<WireItem>> decodeBatch(std::string_view body, BatchHeader& header);
std::string encodeFollowUps(std::uint32_t index, const std::vector<plugin::FollowUp>& follow_ups);
Result<std::pair<std::uint32_t, std::vector<plugin::FollowUp>>> decodeFollowUps(std::string_view body);

// Reads whole frames from a blocking or non-blocking descriptor.
class FrameReader {
public:
    explicit FrameReader(int fd) : fd_(fd) {}
    // Blocks until one frame is read. Error on EOF ("closed") or a bad frame.
    Result<std::pair<FrameType, std::string>> next();
    // Non-blocking: reads what is there; true once a frame is complete
    // (taken with take()); an error on EOF or a read error.
    Result<bool> poll();
    std::pair<FrameType, std::string> take();

private:
    bool complete() const;
    int fd_;
    std::string buf_;
};

// Writes all of `bytes` to a blocking descriptor.
Status writeAll(int fd, std::string_view bytes);

}  // namespace kanban::host::runner
