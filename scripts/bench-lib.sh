# Shared by the benchmark scripts (sourced, not run).

# Waits until something listens on 127.0.0.1:$1 (up to 10 s).
wait_for_port() {
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listening on port $1" >&2
  return 1
}

# Calls `run VARIANT RATE N "$@"` for each of $rates and each run number
# 1..$runs, every variant of $variants in turn: in the listed order on odd
# runs, reversed on even ones, so no variant always goes first.
interleave() {
  local rate n order variant
  for rate in $rates; do
    for n in $(seq "$runs"); do
      order=$variants
      if [ $((n % 2)) -eq 0 ]; then order=$(echo "$variants" | tr ' ' '\n' | tac | tr '\n' ' '); fi
      for variant in $order; do
        echo "-- rate ${rate}/s, run ${n}: ${variant}" >&2
        run "$variant" "$rate" "$n" "$@"
      done
    done
  done
}
