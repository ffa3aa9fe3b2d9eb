#!/usr/bin/env bash
# Runs one loadgen scenario against a fresh release server, the way
# docs/benchmarks.md measures: server on core 0 (one shard), loadgen on core 1.
#
#   scripts/loadtest.sh [loadgen flags...]
#
# SERVER_FLAGS adds server flags; PORT picks the port (default 18080).
# Build first: cargo build --release -p shardcast-server -p shardcast-loadgen
set -euo pipefail
cd "$(dirname "$0")/.."
port="${PORT:-18080}"
server_cpu="${SERVER_CPU:-0}"
loadgen_cpu="${LOADGEN_CPU:-1}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# All load comes from one address: lift the per-address caps, and room for
# the handshake burst of thousands of connections at once.
# shellcheck disable=SC2086
taskset -c "$server_cpu" target/release/shardcast --listen "127.0.0.1:${port}" --no-demo --shards 1 \
  --rate-limit 0 --channel 'load.*' --log warn \
  --max-connections-per-ip 0 --max-http-connections 65536 --max-http-connections-per-ip 0 ${SERVER_FLAGS:-} &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then break; fi
  sleep 0.05
done

status=0
taskset -c "$loadgen_cpu" target/release/shardcast-loadgen --url "ws://127.0.0.1:${port}" \
  --server-pid "$server" "$@" || status=$?

kill -TERM "$server"
server_status=0
wait "$server" || server_status=$?
trap - EXIT
if [ "$server_status" -ne 0 ]; then
  echo "server exited with status $server_status after SIGTERM" >&2
  exit 1
fi
exit "$status"
