#!/usr/bin/env bash
# The test suite on the running local stack (make test starts it first).
#
# Fault tests (TestFault*) stop shared services, so they run first, one
# package at a time; then every other test, with the race detector except
# for the sampler's statistical tests (tens of millions of draws, no
# goroutines). A missing service fails the integration tests.
# The last line is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
TIMEOUT=${TEST_TIMEOUT:-25m}
NORACE=github.com/banditstream/banditstream/sampler
log=.local/test.log
mkdir -p .local
: >"$log"
start=$SECONDS

run() {
  # Verbose output goes to the log; the terminal gets results and failures.
  "$GO" test -v -count=1 -timeout "$TIMEOUT" "$@" 2>&1 | tee -a "$log" |
    { grep -E '^(ok|FAIL|panic:|--- FAIL|\s+\S+_test\.go:[0-9]+:)' || true; }
}

# The local stack's addresses and credentials, for the binaries and for
# tests that read the environment.
set -a
eval "$(deploy/local/stack.sh env)"
set +a

status=0
echo "== fault tests"
BANDITSTREAM_FAULT_TESTS=1 run -p 1 -run '^TestFault' ./... || status=1
echo "== tests"
# shellcheck disable=SC2046
run -race $("$GO" list ./... | grep -v -x "$NORACE") || status=1
run "$NORACE" || status=1

passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
echo "go test: $((SECONDS - start))s (full log: $log)"
echo "$passed passed, $failed failed"
if ((failed > 0 || status != 0)); then
  exit 1
fi
