#!/usr/bin/env bash
# The whole pipeline on the local stack with simulated users (make demo).
#
# Builds the binaries, creates this run's own topics (demo-<time>.*), starts
# bandit-ingest (ingest and sweeper, with a short idle timeout so that
# offloads and reloads show) and bandit-score, runs bandit-sim for
# DEMO_SECONDS (default 60), prints its summary and where the picture is,
# and stops what it started. DEMO_KEEP=1 leaves ingest and score running
# (their pids and logs are printed). The stack itself (make up) stays up.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOCAL=$ROOT/.local
BIN=$LOCAL/bin
OUT=$LOCAL/demo
DEMO_SECONDS=${DEMO_SECONDS:-60}
DEMO_KEEP=${DEMO_KEEP:-0}
GO=${GO:-go}

cd "$ROOT"
# The local stack's addresses and credentials, for every binary below.
set -a
eval "$(deploy/local/stack.sh env)"
set +a
mkdir -p "$BIN" "$OUT"
echo "== building"
"$GO" build -o "$BIN/" ./cmd/bandit-ingest ./cmd/bandit-score ./cmd/bandit-sim ./cmd/bandit-stack

run=demo-$(date +%s)
prefix=$run
keyspace=banditstream_demo
echo "== topics of this run: $run.*"
"$BIN/bandit-stack" topics -topics "$run.interactions:3,$run.score-requests:3,$run.interactions.dlq:1,$run.score-requests.dlq:1,$run.score-results:1,score-replies.$run:1"

pids=()
stop_all() {
	local pid
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

common=(-key-prefix "$prefix" -cql-keyspace "$keyspace" -cql-migrate -log-level warn)
"$BIN/bandit-ingest" "${common[@]}" -mode all -topic "$run.interactions" -group "$run-ingest" \
	-idle-timeout 5s -sweep-interval 1s -snapshot-interval 15s -fetch-max-wait 50ms >"$OUT/ingest.log" 2>&1 &
pids+=($!)
"$BIN/bandit-score" "${common[@]}" -topic "$run.score-requests" -results-topic "$run.score-results" -group "$run-score" \
	-cache-max-age 200ms -fetch-max-wait 20ms >"$OUT/score.log" 2>&1 &
pids+=($!)
echo "== bandit-ingest (pid ${pids[0]}) and bandit-score (pid ${pids[1]}) started; logs in $OUT"

echo "== simulating for ${DEMO_SECONDS}s"
"$BIN/bandit-sim" -requests-topic "$run.score-requests" -events-topic "$run.interactions" -reply-topic "score-replies.$run" \
	-dlq-topics "$run.interactions.dlq,$run.score-requests.dlq" -key-prefix "$prefix" \
	-duration "${DEMO_SECONDS}s" -out "$OUT"

if [ "$DEMO_KEEP" = 1 ]; then
	trap - EXIT
	echo "== left running (DEMO_KEEP=1): kill ${pids[*]} to stop them"
else
	stop_all
	trap - EXIT
	echo "== stopped bandit-ingest and bandit-score; the local stack stays up (make down stops it)"
fi
