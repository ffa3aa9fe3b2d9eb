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
