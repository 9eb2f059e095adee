#!/usr/bin/env bash
# The project's test command (README, .ci/run): installs (if missing) and
# starts real Redis, MariaDB and ZooKeeper on free loopback ports
# (scripts/services.sh), runs vet and the whole test suite with the race
# detector against them (LCPUSH_INTEGRATION=1: an integration test whose
# server is missing fails, never skips; haproxy, chromium and playwright-core
# are installed for the TLS and browser tests), then every benchmark once and
# every fuzz target for a bounded time, and stops the servers. The
# TypeScript and Java SDKs are built and unit-tested first; the Go suite
# then runs them against a live system (sdk_live_test.go).
#   FUZZTIME=10s   time per fuzz target (0 skips fuzzing)
#   TEST_TIMEOUT=20m
#   NO_SERVICES=1  use servers already named by REDIS_ADDR, MYSQL_DSN, ZK_ADDR
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10s}
TEST_TIMEOUT=${TEST_TIMEOUT:-20m}
export GOFLAGS=${GOFLAGS:--mod=mod}

step() { printf '\n== %s\n' "$*"; }

if [ "${NO_SERVICES:-0}" != 1 ]; then
  step "real servers (scripts/services.sh)"
  SVC_DIR=${SVC_DIR:-$(mktemp -d /tmp/lcpush-test-svc.XXXXXX)}
  export SVC_DIR
  trap 'bash scripts/services.sh stop >/dev/null 2>&1 || true' EXIT
  # Benchmark peers (nats-server, mosquitto): the load tool's peer clients are tested against them.
  bash scripts/services.sh install mosquitto nats >/dev/null
  # The TLS terminator and the browser of the end-to-end WebSocket tests
  # (browser_test.go, scripts/tls.sh); playwright-core from the lockfile.
  bash scripts/services.sh install haproxy chromium >/dev/null
  # The SDKs' toolchains (on the CI image already; installed when missing).
  bash scripts/services.sh install jdk node >/dev/null
  bash scripts/services.sh start >/dev/null
  # shellcheck disable=SC1091
  . "$SVC_DIR/env"
  echo "REDIS_ADDR=$REDIS_ADDR ZK_ADDR=$ZK_ADDR MYSQL_DSN=$MYSQL_DSN"
fi
export LCPUSH_INTEGRATION=1

step "npm ci (browsertest: playwright-core from its lockfile)"
(cd browsertest && npm ci --no-audit --no-fund --loglevel=error)

step "TypeScript SDK: npm ci, build (tsc), unit tests against conformance/"
(cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error && npm test)

step "Java SDK: javac, unit tests against conformance/"
bash sdk/java/build.sh test

step "go vet"
go vet ./...

step "go build"
go build -o /dev/null .

step "go test -race"
# The adversarial suite measures latency and memory, and the short chaos run
# kills processes of a cluster on the shared Redis: each runs alone below.
go test -race -count=1 -timeout "$TEST_TIMEOUT" -skip '^(TestAdversarial|TestChaosShort|TestSendQueueDrain)$' ./...

step "short chaos run, alone (docs/reliability.md)"
chaos_log=$(mktemp /tmp/lcpush-chaos-short.XXXXXX)
if ! go test -race -count=1 -timeout 10m -run '^TestChaosShort$' -v . >"$chaos_log" 2>&1; then
  cat "$chaos_log"
  exit 1
fi
grep -E '^(--- |ok)|\|' "$chaos_log" | head -40 || true

step "adversarial suite, alone and without the race detector (figures per attack)"
adv_log=$(mktemp /tmp/lcpush-adversarial.XXXXXX)
if ! go test -count=1 -timeout 10m -run '^TestAdversarial$' -v . >"$adv_log" 2>&1; then
  cat "$adv_log"
  exit 1
fi
grep -E 'SUMMARY|^(--- |ok)' "$adv_log" || true

step "send queue drain at full scale, alone and without the race detector (issue 14)"
# 5,000 unicasts through app 1's queue at 1,000/s while app 2's latency is
# sampled (p99 under 50 ms): a latency bound, so not under -race or beside
# other packages.
go test -count=1 -timeout 5m -run '^TestSendQueueDrain$' -v . | grep -E 'sendqueue_test|^(--- |ok|FAIL)'

step "allocation tests without -race (sync.Pool is randomised under -race)"
go test -count=1 -run 'Alloc' ./...

# Every benchmark once, so that none rots and the checks inside them run.
step "every benchmark once (-benchtime=1x)"
go test -count=1 -run '^$' -bench . -benchtime=1x ./...

if [ "$FUZZTIME" != "0" ]; then
  step "fuzz targets, $FUZZTIME each"
  # Every "func FuzzX(" in a _test.go file, run in its own package.
  grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
    pkg=./$(dirname "${f#./}")
    for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
      echo "-- $pkg $name"
      # Go's fuzzer can end with a bare "context deadline exceeded" when the
      # time is up while a worker is busy (no failing input): run it again once
      # then; any other failure (a crasher) fails at once.
      fz_log=$(mktemp /tmp/lcpush-fuzz.XXXXXX)
      if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg" >"$fz_log" 2>&1; then
        cat "$fz_log"
        if grep -q 'Failing input written' "$fz_log" || ! grep -q 'context deadline exceeded' "$fz_log"; then
          exit 1
        fi
        echo "-- $name: fuzzer timed out at its deadline without a failing input; once more"
        go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
      else
        tail -2 "$fz_log"
      fi
    done
  done
fi
step "all tests passed"
