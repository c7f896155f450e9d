#!/usr/bin/env bash
# The test suite on the running local stack (make test starts it first),
# in two passes: the single-node topology, then the cluster topology (a
# Redis Cluster of 3 masters and 3 replicas, three Kafka brokers).
#
# In each pass, fault tests (TestFault*) stop shared services, so they run
# first, one package at a time; then every other test. The single pass runs
# every package with the race detector except for the statistical tests of
# the sampler and of its off-policy evaluation (tens of millions of draws,
# no goroutines); the cluster pass runs
# the packages that touch Redis or Kafka again, without it. A missing
# service fails the integration tests. TEST_TOPOLOGIES chooses the passes
# (default "single cluster"). The last line is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
TIMEOUT=${TEST_TIMEOUT:-25m}
TOPOLOGIES=${TEST_TOPOLOGIES:-single cluster}
NORACE='/(sampler|sampler/ope)$'
# Packages with no integration test: the cluster pass leaves them out.
NO_SERVICE='/(sampler|sampler/ope|schemas|schemas/pb|consumers/internal/armcache|cmd/internal/faults|cmd/internal/deploytest|store/state|store/cold)$'
log=.local/test.log
mkdir -p .local
: >"$log"
start=$SECONDS

run() {
  # Verbose output goes to the log; the terminal gets results and failures.
  "$GO" test -v -count=1 -timeout "$TIMEOUT" "$@" 2>&1 | tee -a "$log" |
    { grep -E '^(ok|FAIL|panic:|--- FAIL|\s+\S+_test\.go:[0-9]+:)' || true; }
}

status=0
for topology in $TOPOLOGIES; do
  t0=$SECONDS
  echo "== $topology topology" | tee -a "$log"
  if [[ $topology == cluster ]]; then
    # The single topology's Redis and broker make way (Cassandra is shared).
    deploy/local/stack.sh down redis kafka
    TOPOLOGY=cluster deploy/local/stack.sh up
  else
    TOPOLOGY=single deploy/local/stack.sh up
  fi
  # The stack's addresses and credentials, for the binaries and for tests
  # that read the environment.
  set -a
  eval "$(TOPOLOGY=$topology deploy/local/stack.sh env)"
  set +a
  echo "== $topology: fault tests"
  BANDITSTREAM_FAULT_TESTS=1 run -p 1 -run '^TestFault' ./... || status=1
  echo "== $topology: tests"
  if [[ $topology == cluster ]]; then
    # shellcheck disable=SC2046
    run $("$GO" list ./... | grep -v -E "$NO_SERVICE") || status=1
  else
    # shellcheck disable=SC2046
    run -race $("$GO" list ./... | grep -v -E "$NORACE") || status=1
    # shellcheck disable=SC2046
    run $("$GO" list ./... | grep -E "$NORACE") || status=1
  fi
  echo "== $topology: $((SECONDS - t0))s" | tee -a "$log"
done

passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
echo "go test: $((SECONDS - start))s (full log: $log)"
echo "$passed passed, $failed failed"
if ((failed > 0 || status != 0)); then
  exit 1
fi
