#!/usr/bin/env bash
# The project's test command (README, .ci/run): vet, the whole test suite with
# the race detector, then every fuzz target for a bounded time.
#   FUZZTIME=10s   time per fuzz target (0 skips fuzzing)
#   TEST_TIMEOUT=20m
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10s}
TEST_TIMEOUT=${TEST_TIMEOUT:-20m}
export GOFLAGS=${GOFLAGS:--mod=mod}

step() { printf '\n== %s\n' "$*"; }

step "go vet"
go vet ./...

step "go build"
go build -o /dev/null .

step "go test -race"
go test -race -count=1 -timeout "$TEST_TIMEOUT" ./...

if [ "$FUZZTIME" != "0" ]; then
  step "fuzz targets, $FUZZTIME each"
  # Every "func FuzzX(" in a _test.go file, run in its own package.
  grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
    pkg=./$(dirname "${f#./}")
    for name in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
      echo "-- $pkg $name"
      go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
    done
  done
fi
step "all tests passed"
