#!/usr/bin/env bash
# Benchmarks of issue 5, one command per scenario (loopback only, bounded):
#
#   scripts/bench.sh idle      # (a) memory per idle connection, N=1k,5k,10k,19k; naive, nats, mqtt at 10k
#   scripts/bench.sh idle-runs # (a) IDLE_N (9000) idle connections, RUNS (3) rounds of lcpush then mosquitto (fresh servers)
#   scripts/bench.sh storm     # (b) connect storm past room.max_conns, then a health check: RUNS (3) runs,
#                              # median (min-max); STORM_RATE (40000; the doc's second figure: 100000)
#   scripts/bench.sh fanout    # (c) broadcast to 10k connections: lcpush, naive, nats, mqtt
#   scripts/bench.sh unicast   # (d) open-loop pushes through the Center API at 1k and 5k/s, 10k online
#   scripts/bench.sh peers     # nats-server and mosquitto alone: idle + fan-out at N
#   scripts/bench.sh capacity  # (a) ROOMS (6) lcpush processes holding ROOMS x 17,000 idle connections
#   scripts/bench.sh all       # every one of the above
#   scripts/bench.sh smoke     # the CI version: N=50, a few seconds
#   scripts/bench.sh bcast-qos      # issue 15: 60 s of 10 broadcasts/s to 5,000 connections, QoS 0 vs QoS 1 RSS, RUNS (3) pairs
#   scripts/bench.sh sustain        # issue 16: closed-loop broadcasts, one API call each, N=5000,9000: lcpush (memory, bolt), nats
#   scripts/bench.sh cluster-bcast  # issue 15: one QoS 1 broadcast at BCAST_RATE (20000/s) to 100,000 connections,
#                                   # ROOMS (6) rooms and CENTERS (2) centers of scripts/cluster.sh (STORE=redis),
#                                   # the broadcast's ttl CB_TTL (600 s: it outlives the run, so the rows
#                                   # the sessions' ends write are counted while it is live)
#
# It builds the binary (bin/lcpush), starts the servers it needs itself
# (lcpush -store memory; nats-server and mosquitto from Debian packages:
# EXTRA=1 bash scripts/services.sh install), pins the server on CPU
# $SERVER_CPU (0) and the clients on CPU $CLIENT_CPU (1) with taskset, and
# writes results/<scenario>-<target>-<N>-<time>/ (result.json, report.md,
# SVG charts), then results/compare/ (every run under OUT side by side, the
# newest of each kind: compare.md and the charts of docs/benchmarks.md).
# Environment: N (fan-out/unicast/peers connections, 10000), OUT (results), SERVER_CPU, CLIENT_CPU, STREAM_RATES ("400 100 5"), STORES, SENDERS (unicast: API requests in flight, 64)
# ("memory bolt"), ROOMS (6). BIN (bin/lcpush) and BUILD=0 run a binary built
# elsewhere (e.g. of another commit) instead of building the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:-}
N=${N:-10000}
OUT=${OUT:-results}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BIN=${BIN:-bin/lcpush}

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ -n "$SCENARIO" ] || usage

[ "${BUILD:-1}" = 0 ] || go build -o "$BIN" .
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
# (next_src must run in this shell, not in a $(...) or a pipeline's
# subshell, or every run gets the same address.)
next_src() { src_n=$((src_n % 250 + 1)); [ $src_n -lt 2 ] && src_n=2; SRC=127.0.0.$src_n; }

bench() { next_src; "${PIN[@]}" "$BIN" bench "$@" -out "$OUT" -src "$SRC" "${SRV[@]}"; }

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

# run_storm: RUNS (3) storms of STORM_N (17000) connections at STORM_RATE
# (40000) logins/s against a fresh lcpush capped at STORM_CAP (15000) each,
# then the median, min and max of the runs (jq), with the load average
# before and after each: OUT/storm-summary-<rate>-<time>.md.
# LCPUSH_BENCH_YAML: YAML appended to the configuration of each lcpush the
# tool starts (a section the bench's own does not set: saver:, e.g.
# LCPUSH_BENCH_YAML=$'saver:\n  bolt_batch_delay: 4ms' STORES=bolt scripts/bench.sh unicast).
# LCPUSH_STORM_PROFILE / LCPUSH_STORM_PERF=FILE profile the server during
# the connect phase (loadgen/storm.go), run i writing FILE.i.
# run_idle_runs: issue 16's memory figure: RUNS rounds, each one lcpush
# (all-in-one, -store memory) then one mosquitto, IDLE_N connections each;
# the per-connection RSS of every run goes to OUT/idle-runs-<time>.txt with
# the load average (the median, min and max are read from there).
run_idle_runs() {
  local n=${IDLE_N:-9000} runs=${RUNS:-3} i t log sum la0
  sum="$OUT/idle-runs-$(date +%Y%m%d-%H%M%S).txt"
  log=$(mktemp)
  for i in $(seq "$runs"); do
    for t in lcpush mqtt; do
      [ "$t" = mqtt ] && ! have_peer mosquitto && continue
      la0=$(cut -d' ' -f1-3 /proc/loadavg)
      bench idle -n "$n" -target "$t" -max-conns 19500 -rate 10000 -settle 3s -quiet >"$log" 2>&1 || true
      echo "$t run=$i n=$n $(grep -m1 '^| authenticated |' "$log" | tr -s ' ') rss/conn=$(grep -m1 '^| RSS |' "$log" | awk -F'|' '{print $5}' | xargs) heap/conn=$(grep -m1 '^| Go heap' "$log" | awk -F'|' '{print $5}' | xargs) load=[$la0 -> $(cut -d' ' -f1-3 /proc/loadavg)]" | tee -a "$sum"
    done
  done
  rm -f "$log"
}

run_storm() {
  local rate=${STORM_RATE:-40000} runs=${RUNS:-3} i dirs=() log la0 la1 loads=()
  local prof=${LCPUSH_STORM_PROFILE:-} perf=${LCPUSH_STORM_PERF:-}
  log=$(mktemp)
  for i in $(seq "$runs"); do
    la0=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ -n "$prof" ]; then export LCPUSH_STORM_PROFILE=$prof.$i; fi
    if [ -n "$perf" ]; then export LCPUSH_STORM_PERF=$perf.$i; fi
    # Not in a pipeline: bench must run in this shell (next_src).
    bench storm -n "${STORM_N:-17000}" -max-conns "${STORM_CAP:-15000}" -rate "$rate" -hb 10 -quiet >"$log"
    cat "$log"
    la1=$(cut -d' ' -f1-3 /proc/loadavg)
    dirs+=("$(sed -n 's/^results: //p' "$log" | tail -1)")
    loads+=("$la0 -> $la1")
  done
  rm -f "$log"
  storm_summary "$rate" "${dirs[@]}" -- "${loads[@]}"
}

# storm_summary RATE DIR... -- LOADAVG...: the runs side by side, then
# median (min-max) of each figure.
storm_summary() {
  local rate=$1 f out d i=0; shift
  local dirs=() loads=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do dirs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  loads=("$@")
  command -v jq >/dev/null || { echo "bench: jq missing: no storm summary (results: ${dirs[*]})" >&2; return 0; }
  out=$OUT/storm-summary-$rate-$(date -u +%Y%m%d-%H%M%S).md
  {
    echo "# Connect storm: ${#dirs[@]} runs at -rate $rate (scripts/bench.sh storm, STORM_RATE=$rate)"
    echo
    echo "| run | authenticated | per second | handshake p50 / p99 ms | server CPU user / sys ms | server µs / conn | tool µs / conn | cores busy % (sys+softirq) | refused (clients / room) | PONGs / online | dropped | loadavg before -> after | results |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|"
    for d in "${dirs[@]}"; do
      i=$((i + 1))
      jq -r --arg run "$i" --arg load "${loads[$((i - 1))]:-}" --arg dir "$d" \
        '"| \($run) | \(.connect.authed) | \(.connect.authed_per_sec | floor) | \(.connect.handshake.p50_ms * 10 | round / 10) / \(.connect.handshake.p99_ms * 10 | round / 10) | \(.storm.server_user_ms // 0) / \(.storm.server_sys_ms // 0) | \((.storm.server_cpu_us_per_conn // 0) * 10 | round / 10) | \((.storm.client_cpu_us_per_conn // 0) * 10 | round / 10) | \(.storm.cpus // [] | map("cpu\(.cpu) \(.busy_pct | round) (\(.sys_pct + .softirq_pct | round))") | join(", ")) | \(.storm.refused) / \(.storm.server_refused) | \(.storm.pongs) / \(.storm.online_before_check) | \(.storm.dropped) | \($load) | \($dir) |"' \
        "$d/result.json"
    done
    echo
    echo "| figure | median | min | max |"
    echo "|---|---:|---:|---:|"
    for f in "authenticated per second:.connect.authed_per_sec" "handshake p50 ms:.connect.handshake.p50_ms" \
      "handshake p99 ms:.connect.handshake.p99_ms" "server CPU µs per connection:.storm.server_cpu_us_per_conn"; do
      printf '%s\n' "${dirs[@]/%//result.json}" | xargs jq -s -r --arg name "${f%%:*}" \
        "[.[] | ${f#*:} // 0] | sort | \"| \\(\$name) | \\(.[(length - 1) / 2 | floor] * 10 | round / 10) | \\(.[0] * 10 | round / 10) | \\(.[-1] * 10 | round / 10) |\""
    done
  } | tee "$out"
  echo "storm summary: $out" >&2
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
    bench unicast -n "$N" -rate 10000 -rates 1000,5000 -step 10s -qos 1 -store "$st" -senders "${SENDERS:-64}"
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

# run_bcast_qos: issue 15's item 3. Each run is a pair, QoS 0 then QoS 1,
# each against a fresh all-in-one lcpush on the default store (bolt), the
# tool checking that every client had every broadcast; the tool prints the
# ratios' median, min and max (OUT/bcast-qos-*/report.md).
run_bcast_qos() {
  bench bcast-qos -n "${QOS_N:-5000}" -rate 10000 -stream "${QOS_STREAM:-60s}" -stream-rate "${QOS_RATE:-10}" \
    -store "${QOS_STORE:-bolt}" -runs "${RUNS:-3}" -timeout 30m -quiet
}

# mysql_cmd DSN: the mysql client command line for DSN (user:pass@tcp(host:port)/db?...).
mysql_cmd() {
  local dsn=$1 user pass host port db
  user=${dsn%%:*}; pass=${dsn#*:}; pass=${pass%%@tcp(*}
  host=${dsn#*@tcp(}; host=${host%%)*}; port=${host##*:}; host=${host%:*}
  db=${dsn#*)/}; db=${db%%\?*}
  echo mysql -u "$user" -p"$pass" -h "$host" -P "$port" -N -B "$db"
}

# mysql_counts DSN: "table rows" for every table of the DSN's database
# (exact COUNT(*), so any table a version adds is counted too).
mysql_counts() {
  local my t
  read -r -a my <<<"$(mysql_cmd "$1")"
  for t in $("${my[@]}" -e "SELECT table_name FROM information_schema.tables WHERE table_schema=DATABASE() ORDER BY table_name"); do
    echo "$t $("${my[@]}" -e "SELECT COUNT(*) FROM \`$t\`")"
  done
}

# redis_size: the keys and memory of REDIS_ADDR's Redis.
redis_size() {
  local r=(redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR##*:}")
  echo "$("${r[@]}" DBSIZE) keys, used_memory $("${r[@]}" INFO memory | tr -d '\r' | sed -n 's/^used_memory_human://p')"
}

# run_cluster_bcast: issue 15's item 2. A cluster of separate processes
# (scripts/cluster.sh, STORE=redis: ZooKeeper, Redis and MariaDB of its own
# unless ZK_ADDR/REDIS_ADDR/MYSQL_DSN are given) with ROOMS rooms and CENTERS
# centers on BASE_PORT (27300), CB_N (100000) connections from worker
# processes of 17,000 (sources 127.0.0.2, .3, ...), one QoS 1 broadcast at
# BCAST_RATE deliveries/s, after logging in at CB_CONNECT_RATE (2000/s: at
# 10,000/s the rooms' register calls overflowed their pools; a refused login
# dials again, -retry 10). The tool checks every client had it, the rate the
# clients saw and the job through every center; this function counts the
# MySQL rows (and Redis keys) before and after. Everything stops at the end.
run_cluster_bcast() {
  local dir=${CLUSTER_DIR:-$(mktemp -d /tmp/lcpush-bench-cluster.XXXXXX)} rate=${BCAST_RATE:-20000} n=${CB_N:-100000}
  local rooms apis pids before after res t b a
  export CLUSTER_DIR=$dir BASE_PORT=${BASE_PORT:-27300} STORE=redis ROOMS=${ROOMS:-6} CENTERS=${CENTERS:-2}
  mkdir -p "$dir"
  # The bench configuration (loadgen's BenchConfig) with the app's
  # broadcast_rate at the rate asked, a room cap below the open-files limit.
  cat >"$dir/bench.yaml" <<YAML
admin_key: demo-admin-key
apps:
  - id: 1
    name: demo-chat
    secret: demo-secret-app-1-change-me
    api_key: demo-key-app-1
    push_rate: 1000000
    broadcast_rate: $rate
room:
  heartbeat_min: 10
  heartbeat_max: 600
  heartbeat_default: 60
  heartbeat_grace: 10s
  auth_deadline: 10s
  max_conns: 19000
  max_conns_per_ip: 200000
  max_unauthed: 200000
  max_unauthed_per_ip: 200000
  connect_rate_per_ip: -1
  limits:
    ack: {rate: 1000, burst: 65535}
center:
  max_jobs_per_app: 64
YAML
  export CONFIG=$dir/bench.yaml
  # EXIT, not RETURN: a failed step under set -e leaves the script at once.
  trap 'bash scripts/cluster.sh stop || true' EXIT
  bash scripts/cluster.sh start >"$dir/start.log"
  # shellcheck disable=SC1091
  [ -f "$dir/services/env" ] && . "$dir/services/env"
  rooms=$(paste -sd, "$dir/rooms"); apis=$(paste -sd, "$dir/centers")
  pids=$(awk '$2 ~ /^room-/ {print $1}' "$dir/pids" | paste -sd,)
  before=$(mysql_counts "$MYSQL_DSN")
  local rb; rb=$(redis_size)
  local rc=0 online="" hold=${CB_HOLD:-40}
  # The tool keeps the clients online for $hold s after the job (-hold):
  # the rows counted then are the broadcast's; the ones after the clients
  # closed add what their sessions' ends write.
  "$BIN" bench bcast -room "$rooms" -api "$apis" -pid "$pids" -n "$n" -per-proc 17000 -rate "${CB_CONNECT_RATE:-2000}" -retry 10 \
    -qos 1 -bcast-rate "$rate" -round-timeout 30s -drain 60s -hold "${hold}s" -ttl "${CB_TTL:-600}" -timeout 15m -quiet -out "$OUT" \
    >"$dir/bcast.out" 2>"$dir/bcast.err" &
  local tool=$!
  until grep -q '^bcast: holding' "$dir/bcast.err" 2>/dev/null; do
    kill -0 "$tool" 2>/dev/null || break
    sleep 1
  done
  if grep -q '^bcast: holding' "$dir/bcast.err"; then
    online=$(settled_counts $((hold / 5 - 1)))
  fi
  wait "$tool" || rc=$?
  cat "$dir/bcast.err" >&2; cat "$dir/bcast.out"
  sleep 10 # the rooms report 100,000 session ends
  after=$(settled_counts 18)
  local ra drops; ra=$(redis_size)
  # Session ends the rooms did not report (the per-tick bound): their
  # cursors stay in Redis only, by design (room/checkpoint.go).
  drops=$(awk '$2 ~ /^room-/ {print $3}' "$dir/pids" | while read -r a; do
    curl -fs "http://$a/metrics" | awk '/^lcpush_room_checkpoints_dropped_total / {print $2}'
  done | awk '{s += $1} END {print s + 0}')
  res=$(sed -n 's/^results: //p' "$dir/bcast.out" | tail -1)
  {
    echo
    echo "## MySQL rows written (scripts/bench.sh cluster-bcast: ROOMS=$ROOMS CENTERS=$CENTERS, $n connections, QoS 1 at $rate/s)"
    echo
    echo "| table | before | clients online, after the job | written | after the clients closed | written |"
    echo "|---|---:|---:|---:|---:|---:|"
    while read -r t b; do
      o=$(echo "$online" | awk -v t="$t" '$1 == t {print $2}')
      a=$(echo "$after" | awk -v t="$t" '$1 == t {print $2}')
      echo "| $t | $b | ${o:--} | $(( ${o:-0} - b )) | ${a:-0} | $(( ${a:-0} - b )) |"
    done <<<"$before"
    echo "$after" | while read -r t a; do echo "$before" | grep -q "^$t " || echo "| $t (new) | 0 | | | $a | $a |"; done
    echo
    echo "Redis: $rb before; $ra after."
    local my logb; read -r -a my <<<"$(mysql_cmd "$MYSQL_DSN")"
    logb=$("${my[@]}" -e "SELECT COALESCE(SUM(LENGTH(data)), 0) FROM lcpush_broadcast_cursor_log" 2>/dev/null || echo "?")
    echo "Cursor log data after the clients closed: $logb bytes (the ended sessions' cursors, one entry per (uid, app))."
    echo "Session ends the rooms did not report to the store (lcpush_room_checkpoints_dropped_total, summed): $drops."
  } | tee -a "${res:-$dir}/report.md"
  cp "$dir"/*.log "${res:-$dir}/" 2>/dev/null || true
  return $rc
}

# settled_counts K: mysql_counts once they held still 5 s (the durable copy
# is written behind), polling at most K times.
settled_counts() {
  local c b
  c=$(mysql_counts "$MYSQL_DSN")
  for _ in $(seq "$1"); do
    sleep 5
    b=$(mysql_counts "$MYSQL_DSN"); [ "$b" = "$c" ] && break; c=$b
  done
  echo "$c"
}

# run_sustain: issue 16's sustained broadcast. Closed loop, one API call per
# message, SUSTAIN_PUBLISHERS (4) calls in flight, for SUSTAIN_DUR (10s),
# RUNS (3) fresh servers per figure (median, min, max), at each N of
# SUSTAIN_NS ("5000 9000"): lcpush on each store of SUSTAIN_STORES ("memory
# bolt"), then nats-server (one publisher connection, PUB+PING, as many PINGs
# unanswered). SUSTAIN_RATE (1000000) is the "rate" every broadcast asks:
# the bench app's broadcast_rate is 1e8, so that many jobs fit side by side
# and the center runs up to 32 at once, which the room writes together; 0
# asks the app's rate, and the jobs of the app then run one at a time.
# SERVER_BIN: the lcpush that serves (e.g. a build of another commit; the
# tool stays BIN). SUSTAIN_PEERS=0 skips nats-server.
run_sustain() {
  local n st
  for n in ${SUSTAIN_NS:-5000 9000}; do
    for st in ${SUSTAIN_STORES:-memory bolt}; do
      bench sustain -n "$n" -rate 10000 -stream "${SUSTAIN_DUR:-10s}" -publishers "${SUSTAIN_PUBLISHERS:-4}" \
        -bcast-rate "${SUSTAIN_RATE:-1000000}" -store "$st" -runs "${RUNS:-3}" -quiet ${SERVER_BIN:+-bin "$SERVER_BIN"}
    done
    [ "${SUSTAIN_PEERS:-1}" = 0 ] || ! have_peer nats-server || bench sustain -n "$n" -rate 10000 -stream "${SUSTAIN_DUR:-10s}" \
      -publishers "${SUSTAIN_PUBLISHERS:-4}" -target nats -runs "${RUNS:-3}" -quiet
  done
  return 0
}

case "$SCENARIO" in
  sustain) run_sustain ;;
  bcast-qos) run_bcast_qos ;;
  cluster-bcast) run_cluster_bcast ;;
  idle) run_idle ;;
  idle-runs) run_idle_runs ;;
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
case "$SCENARIO" in smoke | bcast-qos | cluster-bcast | sustain) ;; *) "$BIN" bench compare "$OUT" >&2 ;; esac
case "$SCENARIO" in
  bcast-qos | cluster-bcast | sustain) echo "results under $OUT/" >&2 ;;
  *) echo "results under $OUT/ (side by side: $OUT/compare/compare.md)" >&2 ;;
esac
