#!/usr/bin/env bash
# The test command: installs what is missing, builds everything and runs every
# test (unit, integration and end-to-end against a real nats-server that the
# tests start themselves on random loopback ports).
#
#   scripts/test.sh                          # normal build in ./build
#   KANBAN_SANITIZER=address scripts/test.sh # ASan+UBSan build in ./build-address
#   KANBAN_SANITIZER=thread  scripts/test.sh # TSan build in ./build-thread
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

sanitizer="${KANBAN_SANITIZER:-}"
build_dir="build${sanitizer:+-$sanitizer}"
jobs="${KANBAN_JOBS:-2}"

# A sanitizer report anywhere (the tests, or a kanband they start) fails the run.
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1 detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1 print_stacktrace=1}"

# Prefix /usr: the plain build also makes the Debian packages (tests/package).
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DKANBAN_SANITIZER="$sanitizer" >/dev/null
cmake --build "$build_dir" -j"$jobs"
cd "$build_dir"
ctest -j"$jobs" --output-on-failure --timeout 180
