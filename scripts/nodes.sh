#!/usr/bin/env bash
# What joining servers through a bus costs, in one sitting: latency of a
# fan-out run on one node alone (memory broker), on one node numbered in
# Redis, and on two nodes joined through Redis, through a Redis Cluster of
# three, or through NATS, with subscribers spread over both (publishers on
# the first). Variants alternate run by run; each run starts its servers
# and its own bus fresh.
#
# This machine has two cores: the nodes share core 0, the bus and the load
# generator share core 1, so the two-node figures include two servers
# contending for one core — an upper bound on what a node costs a node.
#
#   scripts/nodes.sh [loadgen flags...]
#
# VARIANTS   which to run, of single, redis1, redis2, cluster2 and nats2
#            (default "single redis1 redis2")
# RATES      publishes/s (default "1000": 100 subscribers per publish with
#            the default load, so 100k deliveries/s)
# RUNS       runs per variant and rate (default 2)
# LOAD       the load (default: 2000 connections, 100 topics, 5 subscriptions
#            each, 64-byte payloads, 2 s warm-up, 10 s measured)
# OUT        where the JSON goes (default target/nodes/<date>)
#
# Needs: cargo build --release -p shardcast-server -p shardcast-loadgen, and
# redis-server, redis-cli and nats-server on PATH (those the variants use).
set -euo pipefail
cd "$(dirname "$0")/.."

variants="${VARIANTS:-single redis1 redis2}"
rates="${RATES:-1000}"
runs="${RUNS:-2}"
out="${OUT:-target/nodes/$(date -u +%Y%m%dT%H%M%SZ)}"
load="${LOAD:---connections 2000 --topics 100 --subs 5 --payload 64 --warmup 2 --duration 10}"
ports=(18101 18102)
redis_port=18179
cluster_ports=(18181 18182 18183)
nats_port=18142
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for binary in target/release/shardcast target/release/shardcast-loadgen; do
  [ -x "$binary" ] || { echo "missing $binary: cargo build --release -p shardcast-server -p shardcast-loadgen" >&2; exit 2; }
done
case " $variants " in *" redis"*|*" cluster2 "*)
  command -v redis-server >/dev/null || { echo "missing redis-server (apt install redis-server)" >&2; exit 2; } ;;
esac
case " $variants " in *" nats2 "*)
  command -v nats-server >/dev/null || { echo "missing nats-server (apt install nats-server)" >&2; exit 2; } ;;
esac
mkdir -p "$out"

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# Starts node $1 (0 or 1) with extra flags; prints its pid.
node() {
  local i=$1
  shift
  taskset -c 0 target/release/shardcast --listen "127.0.0.1:${ports[$i]}" --no-demo --shards 1 \
    --rate-limit 0 --channel 'load.*' --log warn --drain-seconds 0 \
    --max-connections-per-ip 0 --max-http-connections 65536 --max-http-connections-per-ip 0 \
    "$@" >/dev/null 2>>"$out/server.log" &
  echo $!
}

# Starts the bus of variant $1 on core 1; prints its pids.
bus() {
  case "$1" in
    redis1|redis2)
      taskset -c 1 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
        >/dev/null 2>&1 &
      echo $!
      wait_for_port "$redis_port" || exit 1 ;;
    cluster2)
      local dir
      dir="$PWD/$out/cluster-$RANDOM"
      mkdir -p "$dir"
      for port in "${cluster_ports[@]}"; do
        taskset -c 1 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
          --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir" \
          >/dev/null 2>&1 &
        echo $!
        wait_for_port "$port" || exit 1
      done
      redis-cli --cluster create "${cluster_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 \
        --cluster-yes >/dev/null
      until redis-cli -p "${cluster_ports[0]}" cluster info | grep -q cluster_state:ok; do sleep 0.1; done ;;
    nats2)
      taskset -c 1 nats-server -a 127.0.0.1 -p "$nats_port" >/dev/null 2>&1 &
      echo $!
      wait_for_port "$nats_port" || exit 1 ;;
  esac
}

# The broker flags of variant $1.
broker() {
  case "$1" in
    redis1|redis2) echo "--broker-url redis://127.0.0.1:${redis_port}/0" ;;
    cluster2) echo "--broker-cluster redis://127.0.0.1:${cluster_ports[0]},redis://127.0.0.1:${cluster_ports[1]}" ;;
    nats2) echo "--broker-url nats://127.0.0.1:${nats_port}" ;;
  esac
}

# One run. $1 = variant, $2 = rate, $3 = run number.
run() {
  local variant=$1 rate=$2 n=$3 buses pids=() urls pid flags
  buses=$(bus "$variant")
  flags=$(broker "$variant")
  # shellcheck disable=SC2086
  case "$variant" in
    single) pids+=("$(node 0)") ;;
    redis1) pids+=("$(node 0 $flags --node-id a)") ;;
    *2)
      pids+=("$(node 0 $flags --node-id a)")
      pids+=("$(node 1 $flags --node-id b)") ;;
  esac
  urls="ws://127.0.0.1:${ports[0]}"
  wait_for_port "${ports[0]}"
  if [ "${#pids[@]}" -eq 2 ]; then
    wait_for_port "${ports[1]}"
    urls="${urls},ws://127.0.0.1:${ports[1]}"
  fi
  # The buses connect in the background: let them.
  [ "$variant" = single ] || sleep 1
  # shellcheck disable=SC2086
  taskset -c 1 target/release/shardcast-loadgen --urls "$urls" \
    --server-pid "$(IFS=,; echo "${pids[*]}")" \
    $load --rate "$rate" --json --quiet "${@:4}" >"$out/${variant}-${rate}-${n}.json" || true
  for pid in "${pids[@]}"; do kill -TERM "$pid"; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for pid in $buses; do kill "$pid" 2>/dev/null || true; done
  for pid in $buses; do wait "$pid" 2>/dev/null || true; done
  sleep 1
}

interleave "$@"

python3 - "$out" "$variants" $rates <<'PY'
import json, os, statistics, sys
out, variants, rates = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def figures(path):
    with open(path) as f:
        r = json.load(f)
    overhead = r.get("cross_node_overhead_ms") or {}
    return {
        "deliveries_per_s": r["delivery"]["per_second"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "cross_p50_ms": overhead.get("p50"),
        "cross_p99_ms": overhead.get("p99"),
        "drop_rate": r["delivery"].get("drop_rate"),
    }
raw = {}
for rate in rates:
    for v in variants:
        runs = sorted(p for p in os.listdir(out) if p.startswith(f"{v}-{rate}-") and p.endswith(".json"))
        raw[f"{v}-{rate}"] = [figures(os.path.join(out, p)) for p in runs]
def median(v, rate, key):
    values = [f[key] for f in raw[f"{v}-{rate}"] if f[key] is not None]
    return statistics.median(values) if values else None
def cell(x, digits=3):
    return "—" if x is None else f"{x:.{digits}f}"
count = len(raw[f"{variants[0]}-{rates[0]}"])
print(f"\nmedians of {count} runs each\n")
print("| publishes/s | variant | deliveries/s | p50 ms | p99 ms | p99 − single ms | other node − publishing node, p50 / p99 ms | drop rate |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
for rate in rates:
    base = median("single", rate, "p99_ms") if "single" in variants else None
    for v in variants:
        p99 = median(v, rate, "p99_ms")
        over = None if base is None or p99 is None else p99 - base
        cross = f"{cell(median(v, rate, 'cross_p50_ms'))} / {cell(median(v, rate, 'cross_p99_ms'))}" if v.endswith("2") else "—"
        print(f"| {rate} | {v} | {cell(median(v, rate, 'deliveries_per_s'), 0)} | {cell(median(v, rate, 'p50_ms'))} | "
              f"{cell(p99)} | {cell(over)} | {cross} | {cell(median(v, rate, 'drop_rate'), 5)} |")
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(raw, f, indent=1)
print(f"\nraw figures: {out}/summary.json")
PY
