#include "worker/inflight_journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "broker/work_queue.hpp"

namespace kanban::host::worker {
namespace fs = std::filesystem;
namespace {

constexpr std::uint32_t kIdle = 0;
constexpr std::uint32_t kRunning = 0x4b4e4252;    // "KNBR"
constexpr std::uint32_t kAbandoned = 0x4b4e4241;  // "KNBA"
constexpr const char* kSuffix = ".slots";

// One worker slot. The fields are written before `state` turns running (a
// release store), so a record that says running is complete.
struct Record {
    std::atomic<std::uint32_t> state;
    std::uint32_t attempt;
    std::uint32_t id_len;
    std::uint32_t reserved;
    char id[broker::kMaxWorkIdBytes];
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
constexpr std::size_t kRecordBytes = 512;
static_assert(sizeof(Record) <= kRecordBytes);

Record* record(void* map, std::size_t slot) {
    return reinterpret_cast<Record*>(static_cast<char*>(map) + slot * kRecordBytes);
}

std::string errnoText() { return std::strerror(errno); }

}  // namespace

Result<std::unique_ptr<StateDir>> StateDir::open(const fs::path& dir) {
    std::error_code ec;
    fs::create_directories(dir / "inflight", ec);
    if (ec) return Error{"state directory " + dir.string() + ": " + ec.message()};
    const fs::path lock = dir / "lock";
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Error{"state directory " + dir.string() + ": cannot open " + lock.string() + ": " + errnoText()};
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const bool busy = errno == EWOULDBLOCK;
        ::close(fd);
        return Error{"state directory " + dir.string() + (busy ? " is in use by another kanband (set state.dir to one of its own)"
                                                             : ": cannot lock: " + errnoText())};
    }
    return std::unique_ptr<StateDir>(new StateDir(dir, fd));
}

StateDir::~StateDir() { ::close(lock_fd_); }

std::vector<InflightItem> StateDir::recover() {
    std::vector<InflightItem> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_ / "inflight", ec)) {
        const fs::path& p = entry.path();
        if (p.extension() != kSuffix) continue;
        const int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        if (::fstat(fd, &st) == 0 && st.st_size > 0) {
            const auto bytes = static_cast<std::size_t>(st.st_size);
            void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (map != MAP_FAILED) {
                for (std::size_t i = 0; i < bytes / kRecordBytes; ++i) {
                    Record* r = record(map, i);
                    const std::uint32_t state = r->state.load(std::memory_order_acquire);
                    if ((state == kRunning || state == kAbandoned) && r->id_len <= sizeof r->id)
                        found.push_back({p.stem().string(), std::string(r->id, r->id_len), r->attempt,
                                         state == kAbandoned});
                    r->state.store(kIdle, std::memory_order_release);
                }
                ::munmap(map, bytes);
            }
        }
        ::close(fd);
    }
    return found;
}

Result<std::unique_ptr<InflightJournal>> InflightJournal::open(const StateDir& dir, const std::string& domain,
                                                               std::size_t slots) {
    const fs::path p = dir.path() / "inflight" / (domain + kSuffix);
    const int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Error{"in-flight journal " + p.string() + ": " + errnoText()};
    const std::size_t bytes = std::max<std::size_t>(1, slots) * kRecordBytes;
    // Never shrink: a file another generation of this domain left bigger
    // keeps its size (its records were recovered at start).
    struct stat st {};
    if (::fstat(fd, &st) != 0 || (static_cast<std::size_t>(st.st_size) < bytes && ::ftruncate(fd, static_cast<off_t>(bytes)) != 0)) {
        const std::string why = errnoText();
        ::close(fd);
        return Error{"in-flight journal " + p.string() + ": " + why};
    }
    void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    const std::string why = errnoText();
    ::close(fd);  // the mapping stays
    if (map == MAP_FAILED) return Error{"in-flight journal " + p.string() + ": " + why};
    for (std::size_t i = 0; i < slots; ++i) record(map, i)->state.store(kIdle, std::memory_order_relaxed);
    return std::unique_ptr<InflightJournal>(new InflightJournal(map, bytes, slots));
}

InflightJournal::~InflightJournal() { ::munmap(map_, bytes_); }

void InflightJournal::begin(std::size_t slot, std::string_view id, std::uint32_t attempt) {
    if (slot >= slots_) return;
    Record* r = record(map_, slot);
    r->state.store(kIdle, std::memory_order_relaxed);
    const std::size_t n = std::min(id.size(), sizeof r->id);
    std::memcpy(r->id, id.data(), n);
    r->id_len = static_cast<std::uint32_t>(n);
    r->attempt = attempt;
    r->state.store(kRunning, std::memory_order_release);
}

void InflightJournal::end(std::size_t slot) {
    if (slot < slots_) record(map_, slot)->state.store(kIdle, std::memory_order_release);
}

void InflightJournal::abandon(std::size_t slot) {
    if (slot < slots_) record(map_, slot)->state.store(kAbandoned, std::memory_order_release);
}

}  // namespace kanban::host::worker
