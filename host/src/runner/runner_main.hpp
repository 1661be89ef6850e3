// kanband --runner: the runner process of a domain with isolation =
// "process". It loads one plugin generation (same loader, same ELF and ABI
// checks as in kanband), then calls handle() for each item of the batches
// kanband sends, and nothing else: no broker, no configuration, no admin.
#pragma once

namespace kanban::host::runner {

// Runs with the socket on fd 3 and the shared memory on fd 4; returns the
// process's exit status.
int runnerMain();

}  // namespace kanban::host::runner
