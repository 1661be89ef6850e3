#include "broker/work_queue.hpp"

#include "common/clock.hpp"

#include <atomic>
#include <random>

namespace kanban::host::broker {

std::string generateWorkId() {
    static std::atomic<std::uint64_t> counter{[] {
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 16) & 0xffffffffffULL;
    }()};
    return "work_" + std::to_string(nowUnixNs()) + "_" + std::to_string(counter.fetch_add(1, std::memory_order_relaxed));
}

}  // namespace kanban::host::broker
