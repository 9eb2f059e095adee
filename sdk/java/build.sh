#!/usr/bin/env bash
# Builds the Java SDK with plain javac (no Maven/Gradle: no third-party dependency).
#   bash sdk/java/build.sh        compile main and tests, package build/lcpush-sdk.jar
#   bash sdk/java/build.sh test   the same, then run the test runner (non-zero exit on any failure)
# LCPUSH_CONFORMANCE overrides the conformance vectors directory (default ../../conformance).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$here/build"
rm -rf "$build/classes" "$build/test-classes"
mkdir -p "$build/classes" "$build/test-classes"
flags=(--release 17 -encoding UTF-8 -Xlint:all -Werror)
javac "${flags[@]}" -d "$build/classes" $(find "$here/src/main/java" -name '*.java' | sort)
javac "${flags[@]}" -cp "$build/classes" -d "$build/test-classes" $(find "$here/src/test/java" -name '*.java' | sort)
jar --create --file "$build/lcpush-sdk.jar" -C "$build/classes" .
echo "built $build/lcpush-sdk.jar"
if [ "${1:-}" = "test" ]; then
  export LCPUSH_CONFORMANCE="${LCPUSH_CONFORMANCE:-$(cd "$here/../../conformance" && pwd)}"
  exec java -cp "$build/classes:$build/test-classes" io.lcpush.sdk.TestRunner
fi
