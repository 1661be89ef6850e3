#!/usr/bin/env bash
# kanbanctl must not carry the daemon: no symbol of the daemon, the worker
# pool, the coordinator, the scheduler or the admin API's content.
set -euo pipefail
ctl="$1"
found=$(nm -C "$ctl" | grep -E 'kanban::host::(daemon|worker|coordinator|scheduler::Scheduler|admin::AdminService|admin::AdminServer|reload)::' | head -5 || true)
if [ -n "$found" ]; then
    echo "kanbanctl links daemon code:"
    echo "$found"
    exit 1
fi
echo "kanbanctl: no daemon symbols ($(nm -C "$ctl" | grep -c 'kanban::host::') kanban::host symbols in all)"
