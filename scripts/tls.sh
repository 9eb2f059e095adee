#!/usr/bin/env bash
# tls.sh: TLS in front of the room, as production runs it (docs/tls.md): a
# local HAProxy (Debian's haproxy, no systemd) that terminates TLS for raw TCP
# and for WSS and speaks PROXY protocol v2 to the room, with a self-signed
# certificate generated on the spot.
#
# Usage:
#   ROOM_TCP=127.0.0.1:7000 ROOM_WS=127.0.0.1:7001 scripts/tls.sh start
#   scripts/tls.sh stop
# Environment:
#   TLS_DIR     state dir (certificate, config, pid, log); default a new temp dir
#   ROOM_TCP    the room's raw TCP listener (required)
#   ROOM_WS     the room's WebSocket listener (optional: no WSS frontend without it)
#   TLS_PORT, WSS_PORT   the frontends' ports; default free ports on 127.0.0.1
#   TLS_NAME    the certificate's name (CN and DNS SAN); default localhost
#   TLS_SOURCE  the source address HAProxy connects to the room from (e.g.
#               127.0.0.2, so that the room can trust it as a proxy while
#               other loopback clients connect directly); default the kernel's
#
# `start` writes TLS_ADDR, WSS_ADDR (host:port), TLS_CA (the certificate, to
# trust in clients), TLS_NAME and TLS_PID to $TLS_DIR/env and prints them as
# export lines. The room must trust 127.0.0.1 as a proxy
# (room.proxy.trusted: [127.0.0.1/32]) on the listeners HAProxy reaches.
set -euo pipefail

die() { echo "[tls] $*" >&2; exit 1; }
log() { echo "[tls] $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cmd_start() {
  command -v haproxy >/dev/null || die "haproxy missing: scripts/services.sh install haproxy"
  command -v openssl >/dev/null || die "openssl missing: scripts/services.sh install haproxy"
  [ -n "${ROOM_TCP:-}" ] || die "ROOM_TCP (the room's raw TCP address) is required"
  TLS_DIR=${TLS_DIR:-$(mktemp -d /tmp/lcpush-tls.XXXXXX)}
  mkdir -p "$TLS_DIR"
  local name=${TLS_NAME:-localhost}
  local tls_port=${TLS_PORT:-$(free_port)}
  local wss_port=${WSS_PORT:-$(free_port)}
  local src=""
  [ -n "${TLS_SOURCE:-}" ] && src=" source $TLS_SOURCE"
  # One key and self-signed certificate; HAProxy wants them in one file.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -days 2 \
    -subj "/CN=$name" -addext "subjectAltName=DNS:$name,IP:127.0.0.1" >/dev/null 2>&1 ||
    die "openssl could not make a certificate"
  cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >"$TLS_DIR/haproxy.pem"
  chmod 600 "$TLS_DIR/key.pem" "$TLS_DIR/haproxy.pem"

  {
    cat <<EOF
global
    # The process limit is 20,000 open files here; each proxied connection
    # holds two.
    maxconn 9000
    log stderr format raw local0 warning
    ssl-default-bind-options ssl-min-ver TLSv1.2
    tune.ssl.default-dh-param 2048

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    # Long-lived connections: the room's heartbeat (<= 5 min) keeps them alive.
    timeout client 10m
    timeout server 10m
    timeout tunnel 10m

# TLS on raw TCP: the protocol's frames inside TLS.
frontend tls_tcp
    bind 127.0.0.1:$tls_port ssl crt $TLS_DIR/haproxy.pem alpn lcpush
    default_backend room_tcp

backend room_tcp
    server room $ROOM_TCP send-proxy-v2$src
EOF
    if [ -n "${ROOM_WS:-}" ]; then
      cat <<EOF

# WSS: TLS terminated here, the WebSocket upgrade and frames passed to the
# room's WebSocket listener as they are (an L4 hop; see docs/tls.md for L7).
frontend wss
    bind 127.0.0.1:$wss_port ssl crt $TLS_DIR/haproxy.pem alpn http/1.1
    default_backend room_ws

backend room_ws
    server room $ROOM_WS send-proxy-v2$src
EOF
    fi
  } >"$TLS_DIR/haproxy.cfg"

  haproxy -c -f "$TLS_DIR/haproxy.cfg" >"$TLS_DIR/check.log" 2>&1 || die "bad config: $(cat "$TLS_DIR/check.log")"
  haproxy -db -f "$TLS_DIR/haproxy.cfg" >"$TLS_DIR/haproxy.log" 2>&1 &
  local pid=$!
  local i
  for i in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || die "haproxy exited: $(cat "$TLS_DIR/haproxy.log")"
    sleep 0.05
  done
  {
    echo "export TLS_DIR='$TLS_DIR'"
    echo "export TLS_PID='$pid'"
    echo "export TLS_ADDR='127.0.0.1:$tls_port'"
    [ -n "${ROOM_WS:-}" ] && echo "export WSS_ADDR='127.0.0.1:$wss_port'"
    echo "export TLS_CA='$TLS_DIR/cert.pem'"
    echo "export TLS_NAME='$name'"
  } >"$TLS_DIR/env"
  log "haproxy $pid: tls 127.0.0.1:$tls_port -> $ROOM_TCP${ROOM_WS:+, wss 127.0.0.1:$wss_port -> $ROOM_WS} (PROXY v2)"
  cat "$TLS_DIR/env"
}

cmd_stop() {
  [ -n "${TLS_DIR:-}" ] && [ -f "$TLS_DIR/env" ] || die "TLS_DIR with an env file is required"
  # shellcheck disable=SC1091
  . "$TLS_DIR/env"
  kill "$TLS_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$TLS_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$TLS_PID" 2>/dev/null || true
  mv "$TLS_DIR/env" "$TLS_DIR/env.stopped"
  log "stopped"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) die "usage: $0 start|stop" ;;
esac
