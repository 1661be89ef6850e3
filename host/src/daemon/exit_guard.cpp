#include "daemon/exit_guard.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace kanban::host::daemon {
namespace {

std::atomic<bool> g_orderly_exit{false};

void exitUnlessOrderly() {
    if (g_orderly_exit.load()) return;
    // No spdlog here: its registry may be gone already.
    static constexpr char kMessage[] =
        "kanband: exit() was called outside an orderly stop (by a plugin?); exiting with status 70\n";
    (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    std::_Exit(kExitUnexpected);
}

}  // namespace

void guardExit() { std::atexit(&exitUnlessOrderly); }
void markOrderlyExit() { g_orderly_exit = true; }

}  // namespace kanban::host::daemon
