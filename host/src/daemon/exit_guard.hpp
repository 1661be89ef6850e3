// An exit that is not kanband's own (a plugin calling exit(), even with
// status 0) must not look like an orderly stop: systemd's
// Restart=on-failure would leave the service down. The guard turns it
// into status 70 (EX_SOFTWARE).
#pragma once

namespace kanban::host::daemon {

inline constexpr int kExitUnexpected = 70;  // EX_SOFTWARE

// exit() runs the atexit handlers in reverse order of registration: the
// guard must come before the destructors of what was set up since (the
// logger, the plugins loaded at start or by a reload), so call this again
// after each of those.
void guardExit();
// From here on, exit() is kanband's own.
void markOrderlyExit();

}  // namespace kanban::host::daemon
