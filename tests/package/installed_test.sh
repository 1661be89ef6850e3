#!/usr/bin/env bash
# package.installed: both packages installed for real with dpkg -i on this
# machine (as CI does), then used as an operator would, then removed and
# purged again:
#   - the system user, the state directory, the conffile's owner and mode, the
#     enabled unit, the man pages;
#   - the installed `kanband --check-config /etc/tps-kanban/kanban.toml`;
#   - `systemd-analyze verify` of the installed unit;
#   - the unit's own ExecStartPre/ExecStart/ExecReload command lines, run as
#     its User= against a nats-server of this test: the shipped plugins handle
#     published items; a plugin built out of tree from the installed example
#     with find_package(KanbanSDK) passes its own test (kanban/testing.hpp),
#     is added by the reload and handles items;
#     SIGTERM stops it with exit 0;
#   - a reinstall keeps an edited conffile; remove keeps it; purge cleans up.
# Needs root; skipped (77) otherwise, and when a tps-kanban that this test
# did not install is present (it is never replaced).
#   installed_test.sh PACKAGES_DIR ABI_MAJOR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pkgdir=$1 abi=$2
rt=$(echo "$pkgdir"/tps-kanban_*_amd64.deb)
dev=$(echo "$pkgdir"/tps-kanban-dev_*_all.deb)
expect "packages built" test -f "$rt" -a -f "$dev"

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: dpkg -i needs root"
    exit 77
fi
marker=/var/tmp/tps-kanban-package-test.installed
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
if installed tps-kanban && [ ! -e "$marker" ]; then
    echo "SKIP: tps-kanban is installed on this machine and this test did not install it"
    exit 77
fi

work=$(mktemp -d /tmp/kanban-package-test.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    dpkg --purge tps-kanban-dev tps-kanban >/dev/null 2>&1 || true
    rm -f "$marker"
    if [ "$rc" -ne 0 ]; then
        for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -30 "$f"; }; done
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# --- install ---------------------------------------------------------------
touch "$marker"
dpkg -i "$rt" "$dev" >"$work/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$work/dpkg.log")"
expect "tps-kanban installed" installed tps-kanban
expect "tps-kanban-dev installed" installed tps-kanban-dev

entry=$(getent passwd tps-kanban) || fail "no system user tps-kanban"
IFS=: read -r _ _ uid gid _ home shell <<<"$entry"
[ "$uid" -lt 1000 ] || fail "tps-kanban is not a system user (uid $uid)"
expect_eq "user's home" "$home" "/var/lib/tps-kanban"
expect_eq "user's shell" "$shell" "/usr/sbin/nologin"
expect_eq "user's group" "$(getent group tps-kanban | cut -d: -f3)" "$gid"
expect_eq "conffile owner and mode" "$(stat -c '%U:%G %a' /etc/tps-kanban/kanban.toml)" "root:tps-kanban 640"
expect_eq "state dir owner and mode" "$(stat -c '%U:%G %a' /var/lib/tps-kanban)" "tps-kanban:tps-kanban 750"
expect_eq "conffiles" "$(dpkg-query -W -f='${Conffiles}' tps-kanban | awk '{print $1}')" "/etc/tps-kanban/kanban.toml"
expect_eq "Provides" "$(dpkg-query -W -f='${Provides}' tps-kanban)" "tps-kanban-abi-$abi"
expect "the unit is enabled" test -L /etc/systemd/system/multi-user.target.wants/tps-kanban.service
expect "man kanband(8)" man -w 8 kanband >/dev/null
expect "the Grafana dashboard" test -f /usr/share/tps-kanban/grafana/kanban.json
expect "the alert rules" test -f /usr/share/tps-kanban/prometheus/kanban-alerts.yml
expect "bash completion for kanbanctl" test -f /usr/share/bash-completion/completions/kanbanctl
expect "man kanbanctl(1)" man -w 1 kanbanctl >/dev/null

# Each library a binary or plugin links (NEEDED) comes from a package in Depends.
depends=$(dpkg-query -W -f='${Depends}' tps-kanban)
for f in $(dpkg -L tps-kanban | grep -E '^/usr/bin/|\.so$'); do
    for soname in $(objdump -p "$f" | awk '/NEEDED/ {print $2}'); do
        path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ && !p {print $NF; p = 1}')
        [ -n "$path" ] || fail "$f needs $soname, which is not installed"
        owner=$(dpkg -S "$path" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")") ||
            fail "no package owns $path"
        pkg=${owner%%:*}
        found=
        # the package, or a virtual package it Provides (libspdlog1.10 provides libspdlog1.10-fmt9)
        for name in "$pkg" $(dpkg-query -W -f='${Provides}' "$pkg" | tr ',' '\n' | awk '{print $1}'); do
            if [[ ", $depends," == *", $name"[\ ,]* ]]; then found=$name; fi
        done
        [ -n "$found" ] || fail "$f needs $soname from $pkg, which Depends lacks: $depends"
    done
done

# --- the installed binaries and unit -----------------------------------------
unit=/usr/lib/systemd/system/tps-kanban.service
key() { sed -n "s/^$1=//p" "$unit"; }
user=$(key User)
# What systemd does for this unit: its User/Group and StateDirectory (an
# array, not a function, so that `"${as_service[@]}" cmd &` gives cmd's PID).
as_service=(setpriv --reuid="$user" --regid="$(key Group)" --init-groups env STATE_DIRECTORY=/var/lib/tps-kanban)
out=$(/usr/bin/kanband --check-config /etc/tps-kanban/kanban.toml 2>&1) || fail "installed check-config: $out"
echo "$out"
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify printed: $verify"

# A nats-server of this test's own, on a port the kernel picks.
setsid nats-server -a 127.0.0.1 -p -1 -js -sd "$work/js" -l "$work/nats.log" &
pids+=($!)
disown "$!"
wait_for 10 grep -q 'Listening for client connections' "$work/nats.log" || fail "nats-server did not start"
nats_port=$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/nats.log")

# The installed configuration, pointed at that server; admin on a free port;
# RabbitMQ at a closed port (it is only Suggested).
conf="$work/kanban.toml"
sed -e "s|nats://127.0.0.1:4222|nats://127.0.0.1:$nats_port|" \
    -e 's|^listen = .*|listen = "127.0.0.1:0"|' \
    -e 's|amqp://guest:guest@127.0.0.1:5672|amqp://guest:guest@127.0.0.1:1|' /etc/tps-kanban/kanban.toml >"$conf"
chgrp tps-kanban "$conf"
chmod 0640 "$conf"
for_conf() { sed "s|/etc/tps-kanban/kanban.toml|$conf|g"; }

pre=$(key ExecStartPre | for_conf)
start=$(key ExecStart | for_conf)
out=$("${as_service[@]}" $pre 2>&1) || fail "ExecStartPre ($pre): $out"
"${as_service[@]}" $start 2>"$work/kanband.log" &
daemon=$!
pids+=($daemon)
wait_for 30 grep -q 'kanband ready' "$work/kanband.log" || fail "the installed kanband did not get ready"
admin=$(sed -n 's/.*kanband ready admin=\([0-9.]*:[0-9]*\).*/\1/p' "$work/kanband.log")
expect_eq "kanband runs as" "$(ps -o user= -p "$daemon")" "$user"

ctl() { /usr/bin/kanbanctl --config "$conf" "$@"; }
processed() {  # processed DOMAIN: the ok count from /metrics
    curl -sf "http://$admin/metrics" |
        awk -v d="domain=\"$1\"" '/^kanban_items_processed_total\{/ && index($0, d) && /outcome="ok"/ {s += $NF} END {print s + 0}'
}
ids=$(ctl publish --domain payment --priority high --payload '{"amount": 12.5, "account": "acct-42"}' --count 20)
expect_eq "payment ids printed" "$(wc -l <<<"$ids")" "20"
ctl publish --domain health_check --payload '{}' --count 5 >/dev/null
processed_is() { [ "$(processed "$1")" = "$2" ]; }
wait_for 30 processed_is payment 20 || fail "payment: $(processed payment) of 20 handled"
wait_for 30 processed_is health_check 5 || fail "health_check: $(processed health_check) of 5 handled"
expect "the installed payment plugin was loaded" grep -q 'plugin loaded domain=payment .*path=/usr/lib/tps-kanban/plugins/payment.so' "$work/kanband.log"

# --- an out-of-tree plugin against the installed SDK, added by a reload ------
cp -r /usr/share/doc/tps-kanban-dev/examples/echo "$work/echo-src"
cmake -S "$work/echo-src" -B "$work/echo-build" -DCMAKE_BUILD_TYPE=Release >"$work/echo-cmake.log" 2>&1 ||
    fail "configuring the example against the installed KanbanSDK: $(tail -5 "$work/echo-cmake.log")"
grep -q "KanbanSDK_DIR:PATH=/usr/share/cmake/KanbanSDK" "$work/echo-build/CMakeCache.txt" ||
    fail "find_package(KanbanSDK) did not find the installed package"
cmake --build "$work/echo-build" >>"$work/echo-cmake.log" 2>&1 || fail "building the example plugin"
# Its own test, with kanban/testing.hpp from the -dev package: no broker.
expect "the example's own test is built" test -x "$work/echo-build/echo_test"
ctest --test-dir "$work/echo-build" --output-on-failure >>"$work/echo-cmake.log" 2>&1 ||
    fail "the example's own test: $(tail -20 "$work/echo-cmake.log")"
install -d -o tps-kanban -g tps-kanban "$work/out"
cat >>"$conf" <<TOML

[[domain]]
name = "echo"
plugin = "$work/echo-build/echo.so"
[domain.settings]
out = "$work/out/echo.txt"
TOML
reload=$(key ExecReload | for_conf | sed "s|\$MAINPID|$daemon|")
while IFS= read -r cmd; do
    out=$("${as_service[@]}" $cmd 2>&1) || fail "ExecReload ($cmd): $out"
done <<<"$reload"
wait_for 30 grep -q 'domain added domain=echo' "$work/kanband.log" || fail "the reload did not add the echo domain"
echo_ids=$(ctl publish --domain echo --payload 'x' --count 10)
echoed() { sort -u "$work/out/echo.txt" 2>/dev/null | wc -l; }
echoed_all() { [ "$(echoed)" = 10 ]; }
wait_for 30 echoed_all || fail "echo handled $(echoed) of 10"
expect_eq "echo handled the published ids" "$(sort "$work/out/echo.txt")" "$(sort <<<"$echo_ids")"

kill -"$(key KillSignal | sed 's/^SIG//')" "$daemon"
rc=0
wait "$daemon" || rc=$?
expect_eq "kanband exit status after SIGTERM" "$rc" "0"

# --- reinstall, remove, purge ----------------------------------------------
echo "# edited by the package test" >>/etc/tps-kanban/kanban.toml
dpkg -i "$rt" >"$work/dpkg.log" 2>&1 || fail "reinstall: $(cat "$work/dpkg.log")"
expect "reinstall keeps the edited conffile" grep -q 'edited by the package test' /etc/tps-kanban/kanban.toml
expect_eq "conffile owner and mode after reinstall" "$(stat -c '%U:%G %a' /etc/tps-kanban/kanban.toml)" "root:tps-kanban 640"
expect_eq "one tps-kanban user" "$(getent passwd | grep -c '^tps-kanban:')" "1"

dpkg -r tps-kanban-dev tps-kanban >"$work/dpkg.log" 2>&1 || fail "dpkg -r: $(cat "$work/dpkg.log")"
expect "remove deletes kanband" test ! -e /usr/bin/kanband
expect "remove deletes the SDK headers" test ! -e /usr/include/kanban/plugin.h
expect "remove keeps the edited conffile" grep -q 'edited by the package test' /etc/tps-kanban/kanban.toml
expect "remove keeps the user" getent passwd tps-kanban >/dev/null

dpkg --purge tps-kanban-dev tps-kanban >"$work/dpkg.log" 2>&1 || fail "dpkg --purge: $(cat "$work/dpkg.log")"
expect "purge deletes the conffile" test ! -e /etc/tps-kanban/kanban.toml
expect "purge deletes the state dir" test ! -e /var/lib/tps-kanban
expect "purge drops the owner override" sh -c '! dpkg-statoverride --list /etc/tps-kanban/kanban.toml'
expect "purge drops the enable link" test ! -e /etc/systemd/system/multi-user.target.wants/tps-kanban.service
expect "purge drops the mask" test ! -L /etc/systemd/system/tps-kanban.service
echo "OK: installed, ran, reloaded, removed and purged"
