#!/usr/bin/env bash
# package.lintian: no error, warning or info tag on either package, except
# those explained in packaging/debian/*.lintian-overrides.
#   lintian_test.sh PACKAGES_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
expect "lintian is installed" command -v lintian >/dev/null
rc=0
out=$(lintian --info --fail-on error,warning,info "$1"/*.deb 2>&1) || rc=$?
out=$(grep -v '^running with root privileges' <<<"$out" || true)
[ "$rc" -eq 0 ] || fail "lintian (exit $rc): $out"
[ -z "$out" ] || fail "lintian printed tags: $out"
echo "OK: lintian clean on $(cd "$1" && echo *.deb)"
