#!/usr/bin/env bash
# Benchmarks of issue 5, one command per scenario (loopback only, bounded):
#
#   scripts/bench.sh idle      # (a) memory per idle connection, N=1k,5k,10k,19k; naive, nats, mqtt at 10k
#   scripts/bench.sh storm     # (b) connect storm past room.max_conns, then a health check
#   scripts/bench.sh fanout    # (c) broadcast to 10k connections: lcpush, naive, nats, mqtt
#   scripts/bench.sh unicast   # (d) open-loop pushes through the Center API at 1k and 5k/s, 10k online
#   scripts/bench.sh peers     # nats-server and mosquitto alone: idle + fan-out at N
#   scripts/bench.sh capacity  # (a) ROOMS (6) lcpush processes holding ROOMS x 17,000 idle connections
#   scripts/bench.sh all       # every one of the above
#   scripts/bench.sh smoke     # the CI version: N=50, a few seconds
#
# It builds the binary (bin/lcpush), starts the servers it needs itself
# (lcpush -store memory; nats-server and mosquitto from Debian packages:
# EXTRA=1 bash scripts/services.sh install), pins the server on CPU
# $SERVER_CPU (0) and the clients on CPU $CLIENT_CPU (1) with taskset, and
# writes results/<scenario>-<target>-<N>-<time>/ (result.json, report.md,
# SVG charts), then results/compare/ (every run under OUT side by side, the
# newest of each kind: compare.md and the charts of docs/benchmarks.md).
# Environment: N (fan-out/unicast/peers connections, 10000), OUT (results), SERVER_CPU, CLIENT_CPU, STREAM_RATES ("400 100 5"), STORES
# ("memory bolt"), ROOMS (6).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:-}
N=${N:-10000}
OUT=${OUT:-results}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BIN=bin/lcpush

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ -n "$SCENARIO" ] || usage

go build -o "$BIN" .
mkdir -p "$OUT"

PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  PIN=(taskset -c "$CLIENT_CPU")
  SRV=(-server-cpu "$SERVER_CPU")
else
  SRV=()
fi

# A fresh loopback source address per run: the previous run's TIME_WAIT
# sockets then do not slow the kernel's source-port search.
src_n=$((20 + RANDOM % 200))
next_src() { src_n=$((src_n % 250 + 1)); [ $src_n -lt 2 ] && src_n=2; echo "127.0.0.$src_n"; }

bench() { "${PIN[@]}" "$BIN" bench "$@" -out "$OUT" -src "$(next_src)" "${SRV[@]}"; }

have_peer() { command -v "$1" >/dev/null || { echo "bench: $1 missing (EXTRA=1 bash scripts/services.sh install); skipped" >&2; return 1; }; }

run_idle() {
  for n in 1000 5000 10000 19000; do
    bench idle -n "$n" -max-conns 19500 -rate 10000 -settle 3s
  done
  bench idle -n "$N" -target naive -rate 10000 -settle 3s
  have_peer nats-server && bench idle -n "$N" -target nats -rate 10000 -settle 3s
  have_peer mosquitto && bench idle -n "$N" -target mqtt -rate 10000 -settle 3s
  return 0
}

run_storm() {
  bench storm -n 17000 -max-conns 15000 -rate 40000 -hb 10
}

# STREAM_RATES: broadcasts per second of the sustained stream, one run each
# (400 x 10k connections asks 4M deliveries/s, 100 asks 1M/s, 5 asks 50k/s).
STREAM_RATES=${STREAM_RATES:-400 100 5}

run_fanout() {
  local r
  for r in $STREAM_RATES; do
    bench fanout -n "$N" -rate 10000 -rounds 20 -stream 5s -stream-rate "$r"
    bench fanout -n "$N" -rate 10000 -rounds 20 -stream 5s -stream-rate "$r" -target naive
  done
  run_peers_fanout
}

run_peers_fanout() {
  local r
  for r in $STREAM_RATES; do
    have_peer nats-server && bench fanout -n "$N" -rate 10000 -rounds 20 -stream 5s -stream-rate "$r" -target nats
    have_peer mosquitto && bench fanout -n "$N" -rate 10000 -rounds 20 -stream 5s -stream-rate "$r" -target mqtt
  done
  return 0
}

# STORES: lcpush's embedded message stores to measure unicast with.
run_unicast() {
  local st
  for st in ${STORES:-memory bolt}; do
    bench unicast -n "$N" -rate 10000 -rates 1000,5000 -step 10s -qos 1 -store "$st"
  done
}

# run_capacity starts ROOMS all-in-one lcpush processes (each its own room,
# -store memory, cap 19,000), then holds 17,000 idle connections on each from
# worker processes of 17,000 connections, one source address each.
run_capacity() {
  local rooms=${ROOMS:-6} per=17000 dir pids="" addrs="" base=${CAP_PORT:-27100} i
  dir=$(mktemp -d /tmp/lcpush-capacity.XXXXXX)
  cat >"$dir/bench.yaml" <<'YAML'
admin_key: demo-admin-key
apps:
  - id: 1
    name: demo-chat
    secret: demo-secret-app-1-change-me
    api_key: demo-key-app-1
room:
  heartbeat_min: 10
  heartbeat_max: 600
  heartbeat_default: 60
  max_conns: 19000
  max_conns_per_ip: 200000
  # Load from a few loopback addresses: lift the per-IP and pre-auth caps.
  max_unauthed: 200000
  max_unauthed_per_ip: 200000
  connect_rate_per_ip: -1
  limits:
    ack: {rate: 1000, burst: 65535}  # the load tool ACKs once per read
center:
  max_jobs_per_app: 64  # the stream scenario keeps 16 broadcasts in flight
YAML
  trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$dir"' RETURN
  for i in $(seq 0 $((rooms - 1))); do
    local p=$((base + 10 * i))
    taskset -c "$SERVER_CPU" "$BIN" -config "$dir/bench.yaml" -store memory -data "$dir/d$i" \
      -room-addr "127.0.0.1:$p" -center-addr "127.0.0.1:$((p + 1))" -dispatch-addr "127.0.0.1:$((p + 2))" \
      -admin-addr "127.0.0.1:$((p + 3))" -log-level warn >"$dir/room$i.log" 2>&1 &
    pids="$pids $!"
    addrs="$addrs${addrs:+,}127.0.0.1:$p"
  done
  for i in $(seq 0 $((rooms - 1))); do
    local p=$((base + 10 * i + 3)) t=0
    until curl -fs "http://127.0.0.1:$p/readyz" >/dev/null; do
      t=$((t + 1)); [ $t -lt 100 ] || { echo "bench: room $i not ready" >&2; return 1; }; sleep 0.2
    done
  done
  "${PIN[@]}" "$BIN" bench idle -room "$addrs" -pid "$(echo $pids | tr ' ' ,)" -n $((rooms * per)) \
    -per-proc "$per" -rate 10000 -settle 5s -timeout 10m -out "$OUT"
}

case "$SCENARIO" in
  idle) run_idle ;;
  storm) run_storm ;;
  fanout) run_fanout ;;
  unicast) run_unicast ;;
  peers)
    have_peer nats-server && bench idle -n "$N" -target nats -rate 10000 -settle 3s
    have_peer mosquitto && bench idle -n "$N" -target mqtt -rate 10000 -settle 3s
    run_peers_fanout ;;
  capacity) run_capacity ;;
  all) run_idle; run_storm; run_fanout; run_unicast; run_capacity ;;
  smoke) "$BIN" bench smoke -out "$OUT" -quiet ;;
  *) usage ;;
esac
[ "$SCENARIO" = smoke ] || "$BIN" bench compare "$OUT" >&2
echo "results under $OUT/ (side by side: $OUT/compare/compare.md)" >&2
