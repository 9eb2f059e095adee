#!/usr/bin/env bash
# cluster.sh: run lcpush as a cluster of separate processes on this machine,
# found by each other through ZooKeeper: 2 rooms, 2 registers, 2 centers,
# 1 saver, 1 coordinator, 1 dispatcher, all on loopback (ROOMS and CENTERS
# change the number of rooms and centers; see below).
#
#   scripts/cluster.sh start    build, start ZooKeeper if ZK_ADDR is unset, start the processes
#   scripts/cluster.sh status   list the processes and their ports
#   scripts/cluster.sh stop     SIGTERM every process (and the ZooKeeper it started)
#
# Environment: CLUSTER_DIR (default /tmp/lcpush-cluster) holds logs, pids and
# data; ZK_ADDR uses an existing ZooKeeper; CONFIG seeds the configuration
# (default: the embedded demo config, written to CLUSTER_DIR); BASE_PORT (7100);
# ZK_AUTH_FILE is the ZooKeeper credential (user:password, mode 0600) every
# process and the CLI use, so that the tree is protected by its ACL (default
# CLUSTER_DIR/zk-auth, created with a random password if missing; set it
# empty to run with open znodes).
# start writes CLUSTER_DIR/env (ZK_ADDR, ZK_ROOT, ZK_AUTH_FILE, the cluster's
# ZooKeeper, root znode and credential): `. CLUSTER_DIR/env` before the
# operator CLI lines of docs/cluster.md.
# STORE picks the saver's message store: bolt (default, embedded in
# CLUSTER_DIR/saver-1) or redis (Redis + MySQL/MariaDB: REDIS_ADDR and
# MYSQL_DSN, each started with scripts/services.sh when unset, like ZooKeeper).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER_DIR=${CLUSTER_DIR:-/tmp/lcpush-cluster}
BASE_PORT=${BASE_PORT:-7100}
BIN=$CLUSTER_DIR/lcpush
ZK_AUTH_FILE=${ZK_AUTH_FILE-$CLUSTER_DIR/zk-auth}
STORE=${STORE:-bolt}
log() { printf '[cluster] %s\n' "$*" >&2; }

# ROOMS and CENTERS (2 each, 1..20) set how many rooms and centers run:
# the first two keep the ports below, room 3 on is room-c, ... (device TCP
# BASE_PORT+100+i, RPC +120+i), center 3 on BASE_PORT+140+j.
ROOMS=${ROOMS:-2}
CENTERS=${CENTERS:-2}
case $ROOMS$CENTERS in *[!0-9]*) log "ROOMS=$ROOMS CENTERS=$CENTERS: want numbers"; exit 2 ;; esac
if [ "$ROOMS" -lt 1 ] || [ "$ROOMS" -gt 20 ] || [ "$CENTERS" -lt 1 ] || [ "$CENTERS" -gt 20 ]; then
  log "ROOMS=$ROOMS CENTERS=$CENTERS: want 1..20 each"; exit 2
fi
room_port() { if [ "$1" -lt 2 ]; then echo $((BASE_PORT + 10 + $1)); else echo $((BASE_PORT + 100 + $1)); fi; }
room_rpc() { if [ "$1" -lt 2 ]; then echo $((BASE_PORT + 5 + $1)); else echo $((BASE_PORT + 120 + $1)); fi; }
center_port() { if [ "$1" -le 2 ]; then echo $((BASE_PORT + 19 + $1)); else echo $((BASE_PORT + 140 + $1)); fi; }
ROOM_NAMES=(a b c d e f g h i j k l m n o p q r s t)

# name target extra-args...: one process; ports are BASE_PORT + offsets.
PROCS=(
  "register-1 register -id register-1 -rpc-addr 127.0.0.1:$((BASE_PORT + 1))"
  "register-2 register -id register-2 -rpc-addr 127.0.0.1:$((BASE_PORT + 2))"
  "saver-1 saver -id saver-1 -rpc-addr 127.0.0.1:$((BASE_PORT + 3))"
  "coordinator-1 coordinator -id coordinator-1 -rpc-addr 127.0.0.1:$((BASE_PORT + 4))"
)
ROOM_ADDRS="" CENTER_URLS=""
for _i in $(seq 0 $((ROOMS - 1))); do
  _n=room-${ROOM_NAMES[$_i]}
  PROCS+=("$_n room -room-id $_n -room-addr 127.0.0.1:$(room_port "$_i") -rpc-addr 127.0.0.1:$(room_rpc "$_i")")
  ROOM_ADDRS="$ROOM_ADDRS${ROOM_ADDRS:+, }127.0.0.1:$(room_port "$_i")"
done
for _j in $(seq 1 "$CENTERS"); do
  PROCS+=("center-$_j center -id center-$_j -node $_j -center-addr 127.0.0.1:$(center_port "$_j")")
  CENTER_URLS="$CENTER_URLS${CENTER_URLS:+, }http://127.0.0.1:$(center_port "$_j")"
done
PROCS+=("dispatcher-1 dispatcher -id dispatcher-1 -dispatch-addr 127.0.0.1:$((BASE_PORT + 30))")

alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1; [ -n "$st" ] && [ "$st" != Z ]; }

cmd_start() {
  if [ -f "$CLUSTER_DIR/pids" ]; then log "$CLUSTER_DIR/pids exists: run stop first"; exit 1; fi
  case $STORE in bolt | redis) ;; *) log "STORE=$STORE: want bolt or redis"; exit 2 ;; esac
  mkdir -p "$CLUSTER_DIR"
  # The servers this cluster needs and nobody gave: one services.sh start.
  local need=""
  [ -n "${ZK_ADDR:-}" ] || need="zookeeper"
  if [ "$STORE" = redis ]; then
    [ -n "${REDIS_ADDR:-}" ] || need="$need redis"
    [ -n "${MYSQL_DSN:-}" ] || need="$need mariadb"
  fi
  if [ -n "$need" ]; then
    # Keep what was given: the env file sets every server it started.
    local given_zk=${ZK_ADDR:-} given_redis=${REDIS_ADDR:-} given_mysql=${MYSQL_DSN:-}
    log "starting$(printf ' %s' $need) (scripts/services.sh; not given in ZK_ADDR/REDIS_ADDR/MYSQL_DSN)"
    # shellcheck disable=SC2086
    SVC_DIR=$CLUSTER_DIR/services SERVICES="$need" bash scripts/services.sh start >/dev/null
    echo "$CLUSTER_DIR/services" > "$CLUSTER_DIR/own-services"
    # shellcheck disable=SC1091
    . "$CLUSTER_DIR/services/env"
    [ -z "$given_zk" ] || ZK_ADDR=$given_zk
    [ -z "$given_redis" ] || REDIS_ADDR=$given_redis
    [ -z "$given_mysql" ] || MYSQL_DSN=$given_mysql
  fi
  local store_args=(-data "$CLUSTER_DIR/saver-1")
  [ "$STORE" = redis ] && store_args=(-store redis -redis "$REDIS_ADDR" -mysql "$MYSQL_DSN")
  echo "$STORE" > "$CLUSTER_DIR/store"
  local cfg=${CONFIG:-$CLUSTER_DIR/seed.yaml}
  [ -n "${CONFIG:-}" ] || cp config.demo.yaml "$cfg"
  go build -o "$BIN" .
  local root="/lcpush-cluster"
  local auth=()
  if [ -n "$ZK_AUTH_FILE" ]; then
    if [ ! -f "$ZK_AUTH_FILE" ]; then
      (umask 077; printf 'lcpush-cluster:%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" > "$ZK_AUTH_FILE")
      log "wrote a ZooKeeper credential to $ZK_AUTH_FILE"
    fi
    auth=(-zk-auth-file "$ZK_AUTH_FILE")
  fi
  : > "$CLUSTER_DIR/pids"
  local i=0 p name target extra
  for p in "${PROCS[@]}"; do
    # shellcheck disable=SC2086
    set -- $p
    name=$1 target=$2; shift 2
    extra=()
    [ "$target" = saver ] && extra=("${store_args[@]}")
    "$BIN" -zk "$ZK_ADDR" -zk-root "$root" ${auth[@]+"${auth[@]}"} -config "$cfg" -target "$target" \
      -admin-addr "127.0.0.1:$((BASE_PORT + 40 + i))" "$@" ${extra[@]+"${extra[@]}"} >"$CLUSTER_DIR/$name.log" 2>&1 &
    echo "$! $name 127.0.0.1:$((BASE_PORT + 40 + i))" >> "$CLUSTER_DIR/pids"
    i=$((i + 1))
  done
  local pid admin
  while read -r pid name admin; do
    for _ in $(seq 600); do
      curl -fsS "http://$admin/readyz" >/dev/null 2>&1 && break
      alive "$pid" || { log "$name exited; see $CLUSTER_DIR/$name.log"; cmd_stop; exit 1; }
      sleep 0.05
    done
  done < "$CLUSTER_DIR/pids"
  local store_desc="bolt in $CLUSTER_DIR/saver-1"
  [ "$STORE" = redis ] && store_desc="redis $REDIS_ADDR + mysql $MYSQL_DSN"
  printf 'export ZK_ADDR=%q ZK_ROOT=%q ZK_AUTH_FILE=%q\n' "$ZK_ADDR" "$root" "$ZK_AUTH_FILE" > "$CLUSTER_DIR/env"
  # For tools (scripts/bench.sh cluster-bcast): one address or URL a line.
  echo "$ROOM_ADDRS" | tr -d ' ' | tr , '\n' > "$CLUSTER_DIR/rooms"
  echo "$CENTER_URLS" | tr -d ' ' | tr , '\n' > "$CLUSTER_DIR/centers"
  log "cluster up (ZooKeeper $ZK_ADDR, root $root, store $store_desc); logs in $CLUSTER_DIR"
  cat <<TXT
rooms (device TCP):   $ROOM_ADDRS
centers (HTTP API):   $CENTER_URLS
dispatcher:           http://127.0.0.1:$((BASE_PORT + 30))
operator CLI:         $BIN keeper -zk $ZK_ADDR -zk-root $root ${auth[*]+${auth[*]}} members
                      (or: . $CLUSTER_DIR/env, then the lines of docs/cluster.md)
TXT
}

cmd_status() {
  [ -f "$CLUSTER_DIR/pids" ] || { log "not running"; return 0; }
  [ -f "$CLUSTER_DIR/store" ] && echo "store $(cat "$CLUSTER_DIR/store")"
  local pid name admin
  while read -r pid name admin; do
    if alive "$pid"; then echo "up    $name pid=$pid admin=$admin"; else echo "down  $name pid=$pid"; fi
  done < "$CLUSTER_DIR/pids"
}

cmd_stop() {
  if [ -f "$CLUSTER_DIR/pids" ]; then
    local pid name admin
    while read -r pid name admin; do alive "$pid" && kill -TERM "$pid" 2>/dev/null || true; done < "$CLUSTER_DIR/pids"
    while read -r pid name admin; do
      for _ in $(seq 300); do alive "$pid" || break; sleep 0.05; done
      if alive "$pid"; then log "$name ignored SIGTERM: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    done < "$CLUSTER_DIR/pids"
    rm -f "$CLUSTER_DIR/pids" "$CLUSTER_DIR/store" "$CLUSTER_DIR/env" "$CLUSTER_DIR/rooms" "$CLUSTER_DIR/centers"
  fi
  if [ -f "$CLUSTER_DIR/own-services" ]; then
    SVC_DIR=$(cat "$CLUSTER_DIR/own-services") bash scripts/services.sh stop >/dev/null 2>&1 || true
    rm -f "$CLUSTER_DIR/own-services"
  fi
  log "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac
