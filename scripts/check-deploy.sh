#!/usr/bin/env bash
# Checks deploy/ against the server it describes:
# 1. the alert rules are valid (promtool check rules) and fire where they
#    should (promtool test rules with alerts_test.yml);
# 2. the Grafana dashboard is valid JSON of the expected shape, and its
#    queries are valid PromQL (promtool, on them as recording rules);
# 3. every metric a dashboard panel or an alert rule names is one a running
#    shardcast exports (scraped from a server started here on a free port).
#
#   scripts/check-deploy.sh
#
# SHARDCAST_BIN names the server binary (default: a debug build, built
# here). promtool comes with the Debian package `prometheus`: installed when
# CI is set; otherwise the promtool checks are skipped, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v promtool >/dev/null 2>&1 && [ -n "${CI:-}" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Only promtool is wanted: a Prometheus the package started goes away.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  else
    service prometheus stop >/dev/null 2>&1 || true
  fi
fi
promtool=""
if command -v promtool >/dev/null 2>&1; then
  promtool=promtool
else
  echo "!!! check-deploy: promtool not found: SKIPPING the rule and PromQL checks (apt-get install prometheus, or set CI=1) !!!" >&2
fi

if [ -n "$promtool" ]; then
  echo "-- promtool check rules deploy/prometheus/alerts.yml"
  promtool check rules deploy/prometheus/alerts.yml
  echo "-- promtool test rules deploy/prometheus/alerts_test.yml"
  promtool test rules deploy/prometheus/alerts_test.yml
fi

bin="${SHARDCAST_BIN:-}"
if [ -z "$bin" ]; then
  cargo build -q -p shardcast-server --bin shardcast
  bin=target/debug/shardcast
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# With a broker it cannot reach, so that the broker families (exported only
# by a server joined through Redis) are there to be named.
"$bin" --listen "127.0.0.1:${port}" --no-demo --shards 1 --log error \
  --broker-url redis://127.0.0.1:1/0 &
server=$!

echo "-- dashboard and rules against the metrics of ${bin}"
python3 scripts/check_deploy_names.py "http://127.0.0.1:${port}/metrics" \
  deploy/grafana/shardcast.json deploy/prometheus/alerts.yml "${work}/dashboard_rules.yml"
if [ -n "$promtool" ]; then
  echo "-- promtool check rules: the dashboard's queries"
  promtool check rules "${work}/dashboard_rules.yml"
fi
echo "-- deploy/ checked"
