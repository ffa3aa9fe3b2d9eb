#!/usr/bin/env bash
# What TLS (and permessage-deflate) cost against plain TCP, in one sitting:
# shardcast fresh on core 0 (one shard) for each variant, the load generator
# on core 1 with the matching flags, variants alternating run by run.
# Prints the medians of deliveries/s, latency, server CPU per delivery and
# bytes the server wrote to its sockets per delivery (from /proc/PID/io and
# the server's own count of messages sent), with ratios to plain.
#
#   scripts/transports.sh [loadgen flags...]
#
# VARIANTS   which to run, of plain, tls, deflate and tls-deflate (default
#            "plain tls deflate"; deflate needs payloads of 256 bytes or more
#            to compress anything, e.g. LOAD with --payload 512)
# RATES      publishes/s (default "1000 5000"; 100 subscribers per publish
#            with the default load: 100k and 500k deliveries/s)
# RUNS       runs per variant and rate (default 2)
# LOAD       the load (default: 2000 connections, 100 topics, 5 subscriptions
#            each, 64-byte payloads, 2 s warm-up, 10 s measured)
# OUT        where the JSON goes (default target/transports/<date>)
set -euo pipefail
cd "$(dirname "$0")/.."

variants="${VARIANTS:-plain tls deflate}"
rates="${RATES:-1000 5000}"
runs="${RUNS:-2}"
out="${OUT:-target/transports/$(date -u +%Y%m%dT%H%M%SZ)}"
load="${LOAD:---connections 2000 --topics 100 --subs 5 --payload 64 --warmup 2 --duration 10}"
port=18090
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for binary in target/release/shardcast target/release/shardcast-loadgen; do
  [ -x "$binary" ] || { echo "missing $binary: cargo build --release -p shardcast-server -p shardcast-loadgen" >&2; exit 2; }
done
mkdir -p "$out"

# A throwaway ECDSA P-256 certificate for 127.0.0.1.
if [ ! -f "$out/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null
fi

# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

# One run. $1 = variant, $2 = rate, $3 = run number.
run() {
  local variant=$1 rate=$2 n=$3 server_flags="" load_flags="" scheme=ws pid sent wchar
  case "$variant" in
    tls) server_flags="--tls-cert $out/cert.pem --tls-key $out/key.pem"
         load_flags="--tls --tls-ca $out/cert.pem"; scheme=wss ;;
    deflate) load_flags="--deflate" ;;
    tls-deflate) server_flags="--tls-cert $out/cert.pem --tls-key $out/key.pem"
         load_flags="--tls --tls-ca $out/cert.pem --deflate"; scheme=wss ;;
  esac
  # shellcheck disable=SC2086
  taskset -c 0 target/release/shardcast --listen "127.0.0.1:${port}" --no-demo --shards 1 \
    --rate-limit 0 --channel 'load.*' --log warn --drain-seconds 0 \
    --max-connections-per-ip 0 --max-http-connections 65536 --max-http-connections-per-ip 0 \
    $server_flags 2>>"$out/server.log" &
  pid=$!
  wait_for_port "$port"
  # shellcheck disable=SC2086
  taskset -c 1 target/release/shardcast-loadgen --url "${scheme}://127.0.0.1:${port}" --server-pid "$pid" \
    $load $load_flags --rate "$rate" --json --quiet "${@:4}" >"$out/${variant}-${rate}-${n}.json" || true
  wchar=$(awk '/^wchar/ {print $2}' "/proc/$pid/io")
  # The server's messages sent, from its metrics (over the variant's transport).
  sent=$(python3 - "$scheme" "$port" "$out/cert.pem" <<'PY'
import json, ssl, sys, http.client
scheme, port, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if scheme == "wss":
    ctx = ssl.create_default_context(cafile=cert)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
else:
    conn = http.client.HTTPConnection("127.0.0.1", port)
conn.request("GET", "/metrics")
body = conn.getresponse().read().decode()
print(next(int(float(l.split()[-1])) for l in body.splitlines() if l.startswith("shardcast_messages_sent_total ")))
PY
)
  python3 - "$out/${variant}-${rate}-${n}.json" "$wchar" "$sent" <<'PY'
import json, sys
path, wchar, sent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path) as f:
    r = json.load(f)
r["wire"] = {"server_bytes_written": wchar, "server_messages_sent": sent,
             "bytes_per_delivery": wchar / sent if sent else None}
with open(path, "w") as f:
    json.dump(r, f)
PY
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  sleep 1
}

interleave "$@"

python3 - "$out" "$variants" $rates <<'PY'
import json, os, statistics, sys
out, variants, rates = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def figures(path):
    with open(path) as f:
        r = json.load(f)
    return {
        "deliveries_per_s": r["delivery"]["per_second"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "cpu_us_per_delivery": r["process"].get("server_cpu_us_per_delivery"),
        "bytes_per_delivery": r["wire"]["bytes_per_delivery"],
        "kib_per_connection": r["process"].get("server_rss_per_connection_at_connect_kib"),
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
keys = [("deliveries_per_s", "deliveries/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
        ("cpu_us_per_delivery", "CPU µs/delivery"), ("bytes_per_delivery", "bytes/delivery"),
        ("kib_per_connection", "KiB/connection")]
count = len(raw[f"{variants[0]}-{rates[0]}"])
print(f"\nmedians of {count} runs each; (ratio to plain)\n")
print("| publishes/s | variant | " + " | ".join(label for _, label in keys) + " | drop rate |")
print("|---:|---|" + "---:|" * (len(keys) + 1))
for rate in rates:
    for v in variants:
        cells = []
        for key, _ in keys:
            a, b = median(v, rate, key), median("plain", rate, key) if "plain" in variants else None
            if a is None:
                cells.append("–")
                continue
            shown = "{:,.0f}".format(a) if key == "deliveries_per_s" else "{:.3g}".format(a)
            if b and v != "plain":
                shown += f" ({a / b:.2f}×)"
            cells.append(shown)
        print(f"| {rate} | {v} | " + " | ".join(cells) + f" | {median(v, rate, 'drop_rate')} |")
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(raw, f, indent=1)
print(f"\nraw figures: {out}/summary.json and one JSON per run")
PY
