#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a local nats-server with
# JetStream in a temporary directory, runs kanband with config/kanban.toml and
# the shipped plugins, publishes sample payment and health_check items, shows
# them handled, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

scripts/install-deps.sh

echo "== building"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target kanband kanbanctl payment health_check noop >/dev/null

work=$(mktemp -d /tmp/kanban-demo-XXXXXX)
nats_pid=""
kanband_pid=""
cleanup() {
    [ -n "$kanband_pid" ] && kill -TERM "$kanband_pid" 2>/dev/null && wait "$kanband_pid" 2>/dev/null || true
    [ -n "$nats_pid" ] && kill -TERM "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_for() {  # wait_for SECONDS COMMAND...: polls until COMMAND succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

echo "== starting nats-server (JetStream, store in $work/nats)"
nats-server -a 127.0.0.1 -p -1 -js -sd "$work/nats" --ports_file_dir "$work" >"$work/nats.log" 2>&1 &
nats_pid=$!
wait_for 10 test -s "$work/nats-server_${nats_pid}.ports"
nats_url=$(grep -o 'nats://[0-9.:]*' "$work/nats-server_${nats_pid}.ports" | head -n1)

# The shipped config, pointed at this nats-server, the freshly built plugins
# and a free admin port; no RabbitMQ fallback (the demo starts only NATS).
sed -e "s#nats://127.0.0.1:4222#${nats_url}#" \
    -e '/^\[rabbitmq\]/,/^\[/ s#^enabled = true#enabled = false#' \
    -e "s#/usr/lib/tps-kanban/plugins#${root}/build/plugins#" \
    -e 's#^listen = "127.0.0.1:9090"#listen = "127.0.0.1:0"#' \
    config/kanban.toml >"$work/kanban.toml"
build/bin/kanband --check-config "$work/kanban.toml"

echo "== starting kanband"
STATE_DIRECTORY="$work/state" build/bin/kanband --config "$work/kanban.toml" 2>"$work/kanband.log" &
kanband_pid=$!
wait_for 10 grep -q "admin: listening on" "$work/kanband.log"
admin=$(grep -o 'listening on [0-9.:]*' "$work/kanband.log" | head -n1 | cut -d' ' -f3)
wait_for 15 curl -fs "http://${admin}/readyz" >/dev/null
echo "   /healthz: $(curl -s "http://${admin}/healthz")   /readyz: $(curl -s "http://${admin}/readyz")"

ctl() { build/bin/kanbanctl --config "$work/kanban.toml" "$@"; }
echo "== publishing sample work"
ctl publish --domain payment --priority high --payload '{"amount": 125.00, "account": "acct-1001"}'
ctl publish --domain payment --priority normal --payload '{"amount": 19.99, "account": "acct-2002"}'
ctl publish --domain payment --priority low --payload '{"amount": 7.5, "account": "acct-3003"}'
ctl publish --domain payment --priority normal --payload '{"amount": -3, "account": "acct-4004"}'
ctl publish --domain health_check --count 2 --payload '{}'
echo "   (and one refused at once:)"
ctl publish --domain shipping --payload '{}' || true

echo "== kanband handled them"
handled() { [ "$(grep -cE 'charged|health check ok|dead-lettered' "$work/kanband.log")" -ge 6 ]; }
if ! wait_for 15 handled; then
    echo "demo: not every item was handled in time; kanband's log:" >&2
    cat "$work/kanband.log" >&2
    exit 1
fi
grep -E 'charged|health check ok|dead-lettered' "$work/kanband.log" | sed 's/^/   /'

echo "== kanbanctl health (GET /health)"
ctl --admin "$admin" health | sed 's/^/   /'
echo "== kanbanctl dlq list payment"
ctl --admin "$admin" dlq list payment 2>&1 | sed 's/^/   /'
echo "== the workload in GET /metrics (non-zero counters)"
curl -s "http://${admin}/metrics" |
    grep -E '^kanban_(items_(processed|dead_lettered|acked|pulled)_total|handler_duration_seconds_count|build_info|plugin_info)' |
    grep -v ' 0$' | sed 's/^/   /'

echo "== stopping kanband (SIGTERM)"
kill -TERM "$kanband_pid"
wait "$kanband_pid"
kanband_pid=""
grep -E 'domain stopped|kanband stopped' "$work/kanband.log" | sed 's/^/   /'
echo "== demo done"
