# Shared by tools/bench-*: start servers on loopback, run loadgen, summarize.
# Source it after setting $root; it sets up $work and kills what it started.

work="$(mktemp -d)"
bench_pids=()
bench_cleanup() {
  for pid in "${bench_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${bench_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap bench_cleanup EXIT
(umask 077; openssl rand -hex 32 | tr -d '\n' > "$work/secret")

free_port() {  # a loopback port nobody listens on
  local p
  while :; do
    p="$(shuf -i 20000-60000 -n 1)"
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# start_service NAME BINARY PORT ARGS...: runs it in the background, waits
# until grpc.health.v1 says SERVING.
start_service() {
  local name="$1" binary="$2" port="$3"; shift 3
  "$root/build/$binary" --listen="127.0.0.1:$port" \
    --jwt_hs256_secret_file="$work/secret" --write_rate_per_second=0 "$@" \
    >"$work/$name.log" 2>&1 &
  bench_pids+=($!)
  for _ in $(seq 1 100); do
    "$root/build/tools/custos_grpcurl" -plaintext -max-time 1 "127.0.0.1:$port" \
      grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING && return 0
    sleep 0.1
  done
  echo "$name did not start; see its log:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

mint() { "$root/build/tools/mint_token" --secret_file="$work/secret" --ttl=1h "$@"; }

# loadgen_json TARGET METHOD DATA TOKEN [loadgen flags...]: one JSON line.
loadgen_json() {
  local target="$1" method="$2" data="$3" token="$4"; shift 4
  "$root/build/tools/loadgen" --target="$target" --method="$method" --data="$data" \
    ${token:+--token="$token"} --json "$@"
}

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# row LABEL JSON: one table line.
row() {
  printf '%-44s %10s %8s %8s %8s\n' "$1" "$(echo "$2" | field rps)" \
    "$(echo "$2" | field p50)" "$(echo "$2" | field p99)" "$(echo "$2" | field p999)"
}
header() { printf '%-44s %10s %8s %8s %8s\n' measurement rps p50_ms p99_ms p999_ms; }
