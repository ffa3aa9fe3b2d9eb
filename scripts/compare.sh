#!/usr/bin/env bash
# shardcast against uWebSockets.js, side by side, in one sitting: each server
# fresh on core 0 (shardcast with one shard), the load generator on core 1,
# the same fan-out load for both, servers alternating run by run. Prints the
# medians and the ratios ours / uWS (below 1 is better for us), and leaves
# every run's JSON in the output directory. Memory per connection is shown
# twice: right after connecting (with the handshakes' freed buffers the
# allocator still holds) and at the end of the run, under load.
#
#   scripts/compare.sh [loadgen flags...]
#
# RATES      publishes/s to try, in turn (default "1000 2000 5000 10000"; with
#            the default load each publish goes to 100 subscribers, so these
#            are 100k to 1M deliveries/s)
# RUNS       runs per server and rate (default 2)
# OUT        where the JSON goes (default target/compare/<date>)
# LOAD       the load's shape (default: 2000 connections, 100 topics,
#            5 subscriptions each, 64-byte payloads, 2 s warm-up, 10 s measured)
# SERVER_FLAGS  more flags for shardcast (e.g. --coalesce-above-cpu 1.0)
#
# Needs: cargo build --release -p shardcast-server -p shardcast-loadgen, and
# npm ci --prefix bench/peers/uws --ignore-scripts (Node.js 18 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

rates="${RATES:-1000 2000 5000 10000}"
runs="${RUNS:-2}"
out="${OUT:-target/compare/$(date -u +%Y%m%dT%H%M%SZ)}"
load="${LOAD:---connections 2000 --topics 100 --subs 5 --payload 64 --warmup 2 --duration 10}"
ours_port=18080
uws_port=18081
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for binary in target/release/shardcast target/release/shardcast-loadgen; do
  [ -x "$binary" ] || { echo "missing $binary: cargo build --release -p shardcast-server -p shardcast-loadgen" >&2; exit 2; }
done
[ -d bench/peers/uws/node_modules/uwebsockets ] ||
  { echo "missing uWebSockets.js: npm ci --prefix bench/peers/uws --ignore-scripts" >&2; exit 2; }
mkdir -p "$out"

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# One run: start the server, load it, stop it. $1 = ours|uws, $2 = rate, $3 = run.
run() {
  local server=$1 rate=$2 n=$3 port pid
  if [ "$server" = ours ]; then
    port=$ours_port
    # shellcheck disable=SC2086
    taskset -c 0 target/release/shardcast --listen "127.0.0.1:${port}" --no-demo --shards 1 \
      --rate-limit 0 --channel 'load.*' --log warn --drain-seconds 0 \
      --max-connections-per-ip 0 --max-http-connections 65536 --max-http-connections-per-ip 0 \
      ${SERVER_FLAGS:-} 2>>"$out/ours.log" &
  else
    port=$uws_port
    taskset -c 0 node bench/peers/uws/server.mjs "$port" 2>>"$out/uws.log" &
  fi
  pid=$!
  wait_for_port "$port"
  # shellcheck disable=SC2086
  taskset -c 1 target/release/shardcast-loadgen --url "ws://127.0.0.1:${port}" --server-pid "$pid" \
    $load --rate "$rate" --json --quiet "${@:4}" >"$out/${server}-${rate}-${n}.json" || true
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  sleep 1 # the sockets of the run before leave TIME_WAIT behind; let the kernel settle
}

for rate in $rates; do
  for n in $(seq "$runs"); do
    # Alternate which server goes first, so neither always runs on a warmer machine.
    if [ $((n % 2)) -eq 1 ]; then order="ours uws"; else order="uws ours"; fi
    for server in $order; do
      echo "-- rate ${rate}/s, run ${n}: ${server}" >&2
      run "$server" "$rate" "$n" "$@"
    done
  done
done

python3 - "$out" $rates <<'PY'
import json, os, statistics, sys

out, rates = sys.argv[1], sys.argv[2:]

def figures(path):
    with open(path) as f:
        r = json.load(f)
    lat, proc, conns = r["latency_ms"], r["process"], r["connections"]
    return {
        "deliveries_per_s": r["delivery"]["per_second"],
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "p999_ms": lat["p999"],
        "cpu_us_per_delivery": proc.get("server_cpu_us_per_delivery"),
        # RSS per connection once all are connected, before traffic: it
        # still holds what the handshakes freed and the allocator has not
        # yet given back (mimalloc purges as its threads run).
        "kib_per_connection": proc.get("server_rss_per_connection_at_connect_kib"),
        # The same at the end of the measured window, under load: settled,
        # with each connection's queues as the load keeps them.
        "kib_per_connection_loaded": proc.get("server_rss_per_connection_kib"),
        "drop_rate": r["delivery"].get("drop_rate"),
        "connected": conns.get("connected"),
    }

raw = {}
for rate in rates:
    for server in ("ours", "uws"):
        runs = sorted(p for p in os.listdir(out) if p.startswith(f"{server}-{rate}-"))
        raw[f"{server}-{rate}"] = [figures(os.path.join(out, p)) for p in runs]

def median(server, rate, key):
    values = [f[key] for f in raw[f"{server}-{rate}"] if f[key] is not None]
    return statistics.median(values) if values else None

keys = [("deliveries_per_s", "deliveries/s"), ("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"),
        ("cpu_us_per_delivery", "CPU/delivery"), ("kib_per_connection", "KiB/conn at connect"),
        ("kib_per_connection_loaded", "KiB/conn under load")]
print(f"\nmedians of {len(raw[f'ours-{rates[0]}'])} runs each; ratio = ours / uWS (below 1: shardcast better)\n")
print("| publishes/s | " + " | ".join(f"{label} ours / uWS (ratio)" for _, label in keys) + " | drops ours / uWS |")
print("|---:|" + "---:|" * (len(keys) + 1))
for rate in rates:
    cells = []
    for key, _ in keys:
        a, b = median("ours", rate, key), median("uws", rate, key)
        if a is None or b is None:
            cells.append("–")
        else:
            ratio = f"{a / b:.2f}×" if b else "∞"
            shown = "{:,.0f}" if key == "deliveries_per_s" else "{:.3g}"
            cells.append(f"{shown.format(a)} / {shown.format(b)} ({ratio})")
    drops = f"{median('ours', rate, 'drop_rate')} / {median('uws', rate, 'drop_rate')}"
    print(f"| {rate} | " + " | ".join(cells) + f" | {drops} |")
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(raw, f, indent=1)
print(f"\nraw figures: {out}/summary.json and one JSON per run")
PY
