#!/usr/bin/env bash
# package.unit: the systemd unit is Type=notify, runs --check-config before
# the start and the reload, and `systemd-analyze security` rates it 2.5 or
# better (exposure on systemd's 0-100 scale: 25).
#   unit_test.sh UNIT_FILE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
unit=$1
key() { sed -n "s/^$1=//p" "$unit"; }
expect_eq "Type" "$(key Type)" "notify"
expect_eq "KillMode" "$(key KillMode)" "mixed"
expect_eq "Restart" "$(key Restart)" "on-failure"
expect_eq "ExecStartPre" "$(key ExecStartPre)" "/usr/bin/kanband --check-config /etc/tps-kanban/kanban.toml"
expect_eq "ExecReload" "$(key ExecReload | tr '\n' '|')" \
    "/usr/bin/kanband --check-config /etc/tps-kanban/kanban.toml|/bin/kill -HUP \$MAINPID|"
stop=$(key TimeoutStopSec)
[ "${stop%s}" -gt 30 ] || fail "TimeoutStopSec $stop is not above the default handler timeout (30 s)"
report=$(systemd-analyze security --offline=yes --threshold=25 "$unit" 2>&1) ||
    fail "systemd-analyze security: $(tail -1 <<<"$report")"
tail -1 <<<"$report"
