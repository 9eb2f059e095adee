#!/usr/bin/env bash
# services.sh: the real servers the integration tests and a local cluster need
# (Redis, MariaDB, ZooKeeper; with EXTRA=1 also mosquitto and nats-server as
# benchmark peers), installed from Debian packages and run WITHOUT systemd:
# each in the foreground of its own state dir, on a free 127.0.0.1 port, and
# stopped by its PID. The Debian system instances and default ports are never
# used, so several checkouts can run side by side.
#
# Usage:
#   scripts/services.sh install [NAME...]   apt-get the packages that are missing
#   scripts/services.sh start   [NAME...]   install if needed, start, write $SVC_DIR/env
#   scripts/services.sh stop                stop what start started (TERM, then KILL)
#   scripts/services.sh status              show what runs and whether it answers
#   scripts/services.sh run CMD [ARG...]    start, run CMD with the env, stop
# NAME is redis, mariadb, zookeeper, mosquitto or nats (and, for `install`
# only, haproxy and chromium (the TLS and browser tests start their own),
# jdk and node (the Java and TypeScript SDKs));
# default: $SERVICES if
# set (e.g. SERVICES=zookeeper), else the first three, and all five with EXTRA=1.
#
# `start` prints the environment as `export` lines on stdout (logs go to
# stderr) and writes the same to $SVC_DIR/env. In a `set -e` script:
#   scripts/services.sh start >/dev/null; trap 'scripts/services.sh stop' EXIT; . "$SVC_DIR/env"
# (a bare eval "$(scripts/services.sh start)" would not stop on a failed start).
# It gives REDIS_ADDR, MYSQL_DSN, ZK_ADDR (and MQTT_ADDR, NATS_URL) and the PIDs.
#
# Environment: SERVICES, SVC_DIR (default /tmp/lcpush-services), READY_TIMEOUT_S (60),
# DB_NAME/DB_USER/DB_PASS (lcpush/lcpush/lcpush), EXTRA=1.
set -euo pipefail

SVC_DIR=${SVC_DIR:-${TMPDIR:-/tmp}/lcpush-services}
EXTRA=${EXTRA:-0}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-60}
DB_NAME=${DB_NAME:-lcpush}
DB_USER=${DB_USER:-lcpush}
DB_PASS=${DB_PASS:-lcpush}
# A 16M redo log instead of the default 96M keeps the datadir near 46 MB.
MYSQL_OPTS=${MYSQL_OPTS:---innodb-log-file-size=16M}
ZK_CLASSPATH=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar

ALL_NAMES="redis mariadb zookeeper mosquitto nats haproxy chromium jdk node"

now_ms() { date +%s%3N; }
log() { printf '[services] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# names ARG...: the servers to act on, checked.
names() {
  local n out=""
  if [ $# -eq 0 ]; then
    # shellcheck disable=SC2086
    [ -n "${SERVICES:-}" ] && set -- $SERVICES
  fi
  if [ $# -eq 0 ]; then
    out="redis mariadb zookeeper"
    [ "$EXTRA" = 1 ] && out="$out mosquitto nats"
  fi
  for n in "$@"; do
    case " $ALL_NAMES " in *" $n "*) out="$out $n" ;; *) die "unknown service $n (want: $ALL_NAMES)" ;; esac
  done
  echo $out
}

# packages NAME: the Debian packages a server needs; binary NAME: what proves them installed.
packages() {
  case $1 in
    redis) echo redis-server ;;
    mariadb) echo mariadb-server ;;
    zookeeper) echo "zookeeper netcat-openbsd" ;;
    mosquitto) echo "mosquitto mosquitto-clients" ;;
    nats) echo nats-server ;;
    haproxy) echo "haproxy openssl" ;; # install only: tests start their own (scripts/tls.sh)
    chromium) echo "chromium fonts-liberation" ;; # install only: playwright-core drives it
    jdk) echo openjdk-17-jdk-headless ;; # install only: the Java SDK (sdk/java) builds with javac
    node) echo "nodejs npm" ;; # install only: the TypeScript SDK and the browser tests
  esac
}
installed() {
  case $1 in
    redis) command -v redis-server >/dev/null && command -v redis-cli >/dev/null ;;
    mariadb) command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null ;;
    zookeeper) [ -f /usr/share/java/zookeeper.jar ] && [ -f /usr/share/java/slf4j-log4j12.jar ] && command -v java >/dev/null ;;
    mosquitto) command -v mosquitto >/dev/null && command -v mosquitto_sub >/dev/null ;;
    nats) command -v nats-server >/dev/null ;;
    haproxy) command -v haproxy >/dev/null && command -v openssl >/dev/null ;;
    chromium) command -v chromium >/dev/null ;;
    jdk) command -v javac >/dev/null && command -v java >/dev/null ;;
    node) command -v node >/dev/null && command -v npm >/dev/null ;;
  esac
}

cmd_install() {
  local n pkgs="" t0 made_policy=0
  for n in $(names "$@"); do installed "$n" || pkgs="$pkgs $(packages "$n")"; done
  if [ -z "$pkgs" ]; then log "installed already: $(names "$@")"; return 0; fi
  [ "$(id -u)" = 0 ] || die "missing packages:$pkgs (run as root, or apt-get install them)"
  t0=$(now_ms)
  # Keep the packages' postinst from starting the system instances on the
  # default ports (6379, 3306, 2181): policy-rc.d exiting 101 forbids it.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $pkgs >&2
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "installed$pkgs in $(($(now_ms) - t0)) ms"
}

# Ports 20000-31999 sit below the kernel's ephemeral range (32768-60999), so
# outgoing connections never take them; a port is handed out once per run.
USED_PORTS=" "
free_port() {
  local p
  while :; do
    p=$((RANDOM % 12000 + 20000))
    case "$USED_PORTS" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS="$USED_PORTS$p "
      echo "$p"
      return 0
    fi
  done
}

# wait_until NAME PID CMD...: poll CMD every 50 ms until it succeeds; fail at
# the deadline or as soon as the server process dies.
wait_until() {
  local name=$1 pid=$2 deadline
  shift 2
  deadline=$(($(now_ms) + READY_TIMEOUT_S * 1000))
  until "$@" >/dev/null 2>&1; do
    pid_alive "$pid" || { log "$name (pid $pid) exited before it was ready; see $SVC_DIR/$name"; return 1; }
    [ "$(now_ms)" -lt "$deadline" ] || { log "$name not ready after ${READY_TIMEOUT_S}s; see $SVC_DIR/$name"; return 1; }
    sleep 0.05
  done
}

# A stopped server may stay a zombie for a second or two before PID 1 reaps
# it, and kill -0 succeeds on a zombie: read the state instead.
pid_alive() {
  local st
  [ -n "${1:-}" ] || return 1
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() { # stop_pid NAME PID
  local name=$1 pid=$2 t0 i
  pid_alive "$pid" || { log "$name (pid $pid) not running"; return 0; }
  t0=$(now_ms)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 400); do # 20 s
    pid_alive "$pid" || { log "$name (pid $pid) stopped in $(($(now_ms) - t0)) ms"; return 0; }
    sleep 0.05
  done
  log "$name (pid $pid) ignored TERM for 20 s: KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# env_add KEY VALUE: one exported, single-quoted line of $SVC_DIR/env.
env_add() { printf "export %s='%s'\n" "$1" "$2" >>"$SVC_DIR/env"; }

# zk4lw PORT WORD: a ZooKeeper four-letter word over bash's /dev/tcp.
zk4lw() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0; printf %s "$1" >&3; cat <&3' "$1" "$2"; }
# "ruok" answers as soon as the port is bound, before the data is loaded;
# "srvr" says Mode: standalone only once requests are served.
zk_serving() { zk4lw "$1" srvr | grep -q '^Mode: standalone'; }
redis_ping() { redis-cli -h 127.0.0.1 -p "$1" ping | grep -q PONG; }
nats_info() { timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0; head -c 4 <&3' "$1" | grep -q INFO; }

start_redis() {
  local d=$SVC_DIR/redis port pid t0
  mkdir -p "$d"
  port=$(free_port)
  t0=$(now_ms)
  # Arguments only: Debian's redis.conf daemonizes on 6379.
  redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes --daemonize no \
    --save '' --appendonly no --dir "$d" --logfile "$d/redis.log" </dev/null >/dev/null 2>&1 &
  pid=$!
  wait_until redis "$pid" redis_ping "$port"
  log "redis ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
  env_add REDIS_PID "$pid"
  env_add REDIS_ADDR "127.0.0.1:$port"
}

start_mariadb() {
  local d=$SVC_DIR/mariadb port pid t0
  mkdir -p "$d"
  port=$(free_port)
  t0=$(now_ms)
  # --no-defaults must come first, or /etc/mysql/my.cnf brings the system
  # paths; as root, both programs need --user=root.
  # shellcheck disable=SC2086
  mariadb-install-db --no-defaults --user=root --datadir="$d/data" \
    --auth-root-authentication-method=socket --skip-test-db $MYSQL_OPTS >"$d/install-db.log" 2>&1 ||
    die "mariadb-install-db failed; see $d/install-db.log"
  # shellcheck disable=SC2086
  mariadbd --no-defaults --user=root --datadir="$d/data" --socket="$d/mysqld.sock" \
    --pid-file="$d/mysqld.pid" --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
    --skip-log-bin --log-error="$d/error.log" $MYSQL_OPTS </dev/null >/dev/null 2>&1 &
  pid=$!
  # Ping over the socket: over TCP mysqladmin exits 0 even on "access denied".
  wait_until mariadb "$pid" mysqladmin --no-defaults --socket="$d/mysqld.sock" -uroot ping
  # With --skip-name-resolve TCP clients are user@127.0.0.1, hence '%'.
  mariadb --no-defaults --socket="$d/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON \`$DB_NAME\`.* TO '$DB_USER'@'%';
SQL
  mariadb --no-defaults -h127.0.0.1 -P"$port" -u"$DB_USER" -p"$DB_PASS" -e 'SELECT 1' "$DB_NAME" >/dev/null ||
    die "mariadb: $DB_USER cannot log in over TCP"
  log "mariadb ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
  env_add MYSQL_PID "$pid"
  env_add MYSQL_SOCKET "$d/mysqld.sock"
  env_add MYSQL_DSN "$DB_USER:$DB_PASS@tcp(127.0.0.1:$port)/$DB_NAME?parseTime=true"
}

start_zookeeper() {
  local d=$SVC_DIR/zookeeper port pid t0
  mkdir -p "$d/data"
  port=$(free_port)
  t0=$(now_ms)
  # Unknown zoo.cfg keys become system properties: admin.enableServer=false
  # keeps Jetty off :8080; the whitelist lets srvr/ruok/mntr answer.
  # minSessionTimeout=1000 lets tests ask for 2 s sessions to see expiry fast.
  cat >"$d/zoo.cfg" <<EOF
tickTime=2000
minSessionTimeout=1000
dataDir=$d/data
clientPort=$port
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,mntr,conf,isro,cons
EOF
  cat >"$d/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
EOF
  # zookeeper.jar ships slf4j-api without a binding: add slf4j-log4j12 and
  # log4j so the server logs at all.
  java -Xms64m -Xmx256m -XX:+UseSerialGC -cp "$ZK_CLASSPATH" \
    -Dlog4j.configuration="file:$d/log4j.properties" -Dzookeeper.jmx.log4j.disable=true \
    org.apache.zookeeper.server.ZooKeeperServerMain "$d/zoo.cfg" </dev/null >"$d/zookeeper.log" 2>&1 &
  pid=$!
  wait_until zookeeper "$pid" zk_serving "$port"
  log "zookeeper ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
  env_add ZK_PID "$pid"
  env_add ZK_ADDR "127.0.0.1:$port"
}

start_mosquitto() {
  local d=$SVC_DIR/mosquitto port pid t0
  mkdir -p "$d"
  port=$(free_port)
  t0=$(now_ms)
  # Started as root it drops to user mosquitto: no files for it to write.
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$port" >"$d/mosquitto.conf"
  mosquitto -c "$d/mosquitto.conf" </dev/null >"$d/mosquitto.log" 2>&1 &
  pid=$!
  wait_until mosquitto "$pid" mosquitto_sub -h 127.0.0.1 -p "$port" -t '$SYS/broker/version' -C 1 -W 1
  log "mosquitto ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
  env_add MQTT_PID "$pid"
  env_add MQTT_ADDR "127.0.0.1:$port"
}

start_nats() {
  local d=$SVC_DIR/nats port pid t0
  mkdir -p "$d"
  port=$(free_port)
  t0=$(now_ms)
  nats-server -a 127.0.0.1 -p "$port" -l "$d/nats.log" </dev/null >/dev/null 2>&1 &
  pid=$!
  wait_until nats "$pid" nats_info "$port"
  log "nats-server ready on 127.0.0.1:$port (pid $pid) in $(($(now_ms) - t0)) ms"
  env_add NATS_PID "$pid"
  env_add NATS_URL "nats://127.0.0.1:$port"
}

# running: true when $SVC_DIR/env names a live server.
running() {
  local v
  [ -f "$SVC_DIR/env" ] || return 1
  for v in $(sed -n 's/^export \([A-Z]*_PID\)=.*/\1/p' "$SVC_DIR/env"); do
    pid_alive "$(env_get "$v")" && return 0
  done
  return 1
}
env_get() { sed -n "s/^export $1='\\(.*\\)'\$/\\1/p" "$SVC_DIR/env" 2>/dev/null; }

cmd_start() {
  local n list t0
  list=$(names "$@")
  running && die "$SVC_DIR/env names running servers: run '$0 stop' first (or set SVC_DIR)"
  # start empties SVC_DIR: only one that is new, empty or ours.
  if [ -d "$SVC_DIR" ] && [ -n "$(ls -A "$SVC_DIR")" ] && [ ! -e "$SVC_DIR/env" ] && [ ! -e "$SVC_DIR/env.stopped" ]; then
    die "SVC_DIR=$SVC_DIR holds files this script did not write: pick another SVC_DIR"
  fi
  cmd_install "$@"
  rm -rf "$SVC_DIR"
  mkdir -p "$SVC_DIR"
  : >"$SVC_DIR/env"
  env_add SVC_DIR "$SVC_DIR"
  t0=$(now_ms)
  # A server that fails to start (set -e exits) takes down the ones already started.
  trap 'log "start failed: stopping what started"; cmd_stop || true' EXIT
  for n in $list; do "start_$n"; done
  trap - EXIT
  log "started $list in $(($(now_ms) - t0)) ms; env in $SVC_DIR/env"
  cat "$SVC_DIR/env"
}

cmd_stop() {
  [ -f "$SVC_DIR/env" ] || { log "nothing started in $SVC_DIR"; return 0; }
  local n v
  # Reverse start order; each server shuts down cleanly on SIGTERM.
  for n in nats:NATS_PID mosquitto:MQTT_PID zookeeper:ZK_PID mariadb:MYSQL_PID redis:REDIS_PID; do
    v=$(env_get "${n#*:}")
    [ -n "$v" ] && stop_pid "${n%%:*}" "$v"
  done
  mv "$SVC_DIR/env" "$SVC_DIR/env.stopped"
}

cmd_status() {
  [ -f "$SVC_DIR/env" ] || { echo "not started (no $SVC_DIR/env)"; return 1; }
  local n v pid addr ok rc=0
  for n in redis:REDIS mariadb:MYSQL zookeeper:ZK mosquitto:MQTT nats:NATS; do
    v=${n#*:}
    pid=$(env_get "${v}_PID")
    [ -n "$pid" ] || continue
    addr=$(env_get "${v}_ADDR")
    [ "$v" = NATS ] && addr=$(env_get NATS_URL)
    [ "$v" = MYSQL ] && addr=$(env_get MYSQL_DSN)
    ok=down
    if pid_alive "$pid"; then
      ok=running
      case $v in
        REDIS) redis_ping "${addr##*:}" >/dev/null 2>&1 && ok=ready ;;
        ZK) zk_serving "${addr##*:}" >/dev/null 2>&1 && ok=ready ;;
        MYSQL) mysqladmin --no-defaults --socket="$(env_get MYSQL_SOCKET)" -uroot ping >/dev/null 2>&1 && ok=ready ;;
        *) ok=ready ;;
      esac
    fi
    [ "$ok" = ready ] || rc=1
    printf '%-10s pid %-7s %-8s %s\n' "${n%%:*}" "$pid" "$ok" "$addr"
  done
  return $rc
}

# cmd_run CMD...: start, run CMD with the servers' env, stop whatever happens.
cmd_run() {
  [ $# -gt 0 ] || die "run needs a command"
  cmd_start >/dev/null
  trap 'cmd_stop' EXIT
  trap 'exit 130' INT TERM
  set -a
  # shellcheck disable=SC1091
  . "$SVC_DIR/env"
  set +a
  local rc=0
  "$@" || rc=$?
  return $rc
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  run) shift; cmd_run "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
