#!/usr/bin/env bash
# package.build: CPack makes both Debian packages from this build tree, with
# the control fields docs/design.md §6 and the packaging checklist ask for.
#   build_test.sh BUILD_DIR ABI_MAJOR VERSION
set -euo pipefail
. "$(dirname "$0")/lib.sh"
build=$1 abi=$2 version=$3

rm -rf "$build/packages"
(cd "$build" && cpack >"$build/cpack.log" 2>&1) || { cat "$build/cpack.log" >&2; fail "cpack"; }
rt="$build/packages/tps-kanban_${version}-1_amd64.deb"
dev="$build/packages/tps-kanban-dev_${version}-1_all.deb"
expect "tps-kanban package built" test -f "$rt"
expect "tps-kanban-dev package built" test -f "$dev"

field() { dpkg-deb -f "$1" "$2"; }
expect_eq "runtime Provides" "$(field "$rt" Provides)" "tps-kanban-abi-$abi"
expect_eq "runtime Recommends" "$(field "$rt" Recommends)" "nats-server"
expect_eq "runtime Suggests" "$(field "$rt" Suggests)" "rabbitmq-server"
expect_eq "dev Architecture" "$(field "$dev" Architecture)" "all"
depends=$(field "$rt" Depends)
for p in adduser libnats3.4 librabbitmq4 libc6 libstdc++6 libsystemd0; do
    [[ ", $depends," == *", $p"[\ ,]* ]] || fail "Depends lacks $p: $depends"
done

# Every file the checklist names, and nothing under /usr/local or /usr/etc.
contents=$(dpkg-deb -c "$rt" | awk '{print $6}')
for f in ./usr/bin/kanband ./usr/bin/kanbanctl ./usr/lib/tps-kanban/plugins/payment.so \
    ./usr/lib/tps-kanban/plugins/health_check.so ./usr/lib/tps-kanban/plugins/noop.so \
    ./etc/tps-kanban/kanban.toml ./usr/lib/systemd/system/tps-kanban.service \
    ./usr/share/doc/tps-kanban/copyright ./usr/share/doc/tps-kanban/changelog.Debian.gz \
    ./usr/share/man/man8/kanband.8.gz ./usr/share/man/man1/kanbanctl.1.gz \
    ./usr/share/doc/tps-kanban/examples/cluster.toml ./usr/share/doc/tps-kanban/examples/nats-cluster.conf \
    ./usr/share/doc/tps-kanban/docs/operating.md ./usr/share/doc/tps-kanban/docs/design.md; do
    grep -qxF "$f" <<<"$contents" || fail "tps-kanban lacks $f"
done
! grep -qE '^\./usr/(local|etc)/' <<<"$contents" || fail "tps-kanban installs under /usr/local or /usr/etc"
dev_contents=$(dpkg-deb -c "$dev" | awk '{print $6}')
for f in ./usr/include/kanban/plugin.h ./usr/include/kanban/handler.hpp \
    ./usr/share/cmake/KanbanSDK/KanbanSDKConfig.cmake ./usr/share/cmake/KanbanSDK/KanbanSDKConfigVersion.cmake \
    ./usr/share/doc/tps-kanban-dev/examples/echo/CMakeLists.txt ./usr/share/doc/tps-kanban-dev/copyright; do
    grep -qxF "$f" <<<"$dev_contents" || fail "tps-kanban-dev lacks $f"
done

ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$rt" "$ctl"
expect_eq "conffiles" "$(cat "$ctl/conffiles")" "/etc/tps-kanban/kanban.toml"
for s in postinst prerm postrm; do
    expect "$s is executable" test -x "$ctl/$s"
    expect "$s passes sh -n" sh -n "$ctl/$s"
done
echo "OK: $(basename "$rt") $(basename "$dev")"
