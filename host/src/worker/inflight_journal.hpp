// Which item each worker of this process has in a handler, kept in files
// mapped into memory under the state directory (`state.dir`), so that the
// next process knows which items were in handlers when this one died (a
// plugin's SIGSEGV, abort() or exit(), the OOM killer, SIGKILL) and charges
// each of them one attempt: an item that kills the host reaches the DLQ as
// `handler_crashed` after max_attempts calls, and the items that merely
// shared its batch are charged nothing.
//
// Marking costs plain memory stores, no system call: the kernel keeps a
// shared mapping's pages when the process dies. (A power loss or kernel
// crash loses the marks; the items are then retried uncharged.)
//
// One file per domain, `<dir>/inflight/<domain>.slots`, one fixed-size
// record per worker slot. A lock file keeps two processes off one
// directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace kanban::host::worker {

// What a previous process left in a handler.
struct InflightItem {
    std::string domain, id;
    std::uint32_t attempt = 0;  // the handler call it was
    bool abandoned = false;     // hung past its timeout and abandoned by a stop, not a crash
};

// The state directory, held for this process's life (a lock file).
class StateDir {
public:
    // Creates `dir` if needed and locks it; an error if another process holds it.
    static Result<std::unique_ptr<StateDir>> open(const std::filesystem::path& dir);
    ~StateDir();
    const std::filesystem::path& path() const { return dir_; }
    // Reads what the previous process left in handlers and clears it.
    std::vector<InflightItem> recover();

private:
    StateDir(std::filesystem::path dir, int lock_fd) : dir_(std::move(dir)), lock_fd_(lock_fd) {}
    std::filesystem::path dir_;
    int lock_fd_;
};

class InflightJournal {
public:
    // A journal of `slots` records for `domain`; an error leaves the domain
    // running without one (logged by the caller).
    static Result<std::unique_ptr<InflightJournal>> open(const StateDir& dir, const std::string& domain,
                                                         std::size_t slots);
    ~InflightJournal();
    InflightJournal(const InflightJournal&) = delete;
    InflightJournal& operator=(const InflightJournal&) = delete;

    // Slot `slot` starts a handler call on `id` (its attempt `attempt`).
    void begin(std::size_t slot, std::string_view id, std::uint32_t attempt);
    // The call returned (whatever it returned).
    void end(std::size_t slot);
    // The call is left running past its timeout by a stop or a reload.
    void abandon(std::size_t slot);

private:
    InflightJournal(void* map, std::size_t bytes, std::size_t slots) : map_(map), bytes_(bytes), slots_(slots) {}
    void* map_;
    std::size_t bytes_;
    std::size_t slots_;
};

}  // namespace kanban::host::worker
