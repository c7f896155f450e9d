#!/usr/bin/env bash
# The whole pipeline on the local stack with simulated users (make demo).
#
# Builds the binaries, creates a run's own topics (demo-<time>.*), starts
# bandit-ingest (ingest and sweeper, with a short idle timeout so that
# offloads and reloads show) and bandit-score, runs bandit-sim for
# DEMO_SECONDS (default 60), prints its summary and where the picture is,
# and stops what it started. DEMO_KEEP=1 leaves ingest and score running
# (their pids and logs are printed). The stack itself (make up) stays up.
# bandit-score logs its decisions, and the steady run ends with bandit
# evaluate's estimates of what other policies would have earned on them,
# beside their true values from the simulation.
#
# DEMO_SCENARIO picks what the catalogue does (default steady: the run
# above, once). Each other scenario runs the pipeline twice on the same
# simulated world, with one setting changed, and the second run's picture
# gains a panel comparing the two runs' regret:
#   drift      the best items switch half-way; without decay, then with
#              -half-life DEMO_HALF_LIFE (default 10s)
#   new-items  an item joins every 3 s, in two contexts whose items click
#              at different levels; with the global Beta(1, 1) prior, then
#              with -prior context
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOCAL=$ROOT/.local
BIN=$LOCAL/bin
OUT=$LOCAL/demo
DEMO_SECONDS=${DEMO_SECONDS:-60}
DEMO_KEEP=${DEMO_KEEP:-0}
DEMO_SCENARIO=${DEMO_SCENARIO:-steady}
DEMO_HALF_LIFE=${DEMO_HALF_LIFE:-10s}
GO=${GO:-go}

cd "$ROOT"
# The local stack's addresses and credentials, for every binary below.
set -a
eval "$(deploy/local/stack.sh env)"
set +a
mkdir -p "$BIN" "$OUT"
echo "== building"
"$GO" build -o "$BIN/" ./cmd/bandit-ingest ./cmd/bandit-score ./cmd/bandit-sim ./cmd/bandit-stack ./cmd/bandit

pids=()
stop_all() {
	local pid
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	pids=()
}
trap stop_all EXIT

# run_pipeline <out folder> <ingest and scorer flags> <scorer flags> <bandit-sim flags...>
# runs one pipeline on topics and a namespace of its own, and the simulator
# against it; the pipeline is stopped after unless it is the last run and
# DEMO_KEEP=1.
compared=""
run_pipeline() {
	local out=$1 both=$2 scorer=$3
	shift 3
	local run prefix keyspace=banditstream_demo
	run=demo-$(date +%s%N | cut -c1-13)
	prefix=$run
	mkdir -p "$out"
	echo "== topics of this run: $run.*"
	"$BIN/bandit-stack" topics -topics "$run.interactions:3,$run.score-requests:3,$run.interactions.dlq:1,$run.score-requests.dlq:1,$run.score-results:1,score-replies.$run:1,$run.decisions:3"
	local common=(-key-prefix "$prefix" -cql-keyspace "$keyspace" -cql-migrate -log-level warn)
	# shellcheck disable=SC2086 # the flags are words
	"$BIN/bandit-ingest" "${common[@]}" $both -mode all -topic "$run.interactions" -group "$run-ingest" \
		-idle-timeout 5s -sweep-interval 1s -snapshot-interval 15s -fetch-max-wait 50ms >"$out/ingest.log" 2>&1 &
	pids+=($!)
	# shellcheck disable=SC2086
	"$BIN/bandit-score" "${common[@]}" $both $scorer -topic "$run.score-requests" -results-topic "$run.score-results" -group "$run-score" \
		-cache-max-age 200ms -fetch-max-wait 20ms -decisions-topic "$run.decisions" >"$out/score.log" 2>&1 &
	pids+=($!)
	echo "== bandit-ingest (pid ${pids[0]}) and bandit-score (pid ${pids[1]}) started${both:+ with $both}${scorer:+ $scorer}; logs in $out"
	echo "== simulating for ${DEMO_SECONDS}s"
	"$BIN/bandit-sim" -requests-topic "$run.score-requests" -events-topic "$run.interactions" -reply-topic "score-replies.$run" \
		-dlq-topics "$run.interactions.dlq,$run.score-requests.dlq" -key-prefix "$prefix" \
		-duration "${DEMO_SECONDS}s" -out "$out" -decisions-topic "$run.decisions" "${policies[@]}" "$@"
	decisions=$run.decisions events=$run.interactions
}

# The policies the decision log is evaluated for, by bandit-sim (their true
# value, from the hidden rates) and by bandit evaluate (estimated).
policies=(-policy logged -policy mean -policy uniform -policy "weak prior=-prior-alpha 1 -prior-beta 30")

# evaluate estimates from the last run's decision log what each policy
# would have earned: to compare with the truths bandit-sim printed.
evaluate() {
	echo "== off-policy evaluation of the decision log (bandit evaluate; the truths are in the summary above)"
	"$BIN/bandit" evaluate -decisions-topic "$decisions" -events-topic "$events" -window 10s -progress never \
		"${policies[@]}" -json "$OUT/evaluation.json"
}

finish() {
	if [ "$DEMO_KEEP" = 1 ]; then
		trap - EXIT
		echo "== left running (DEMO_KEEP=1): kill ${pids[*]} to stop them"
	else
		stop_all
		trap - EXIT
		echo "== stopped bandit-ingest and bandit-score; the local stack stays up (make down stops it)"
	fi
}

case "$DEMO_SCENARIO" in
steady)
	run_pipeline "$OUT" "" ""
	evaluate
	finish
	;;
drift)
	run_pipeline "$OUT/drift/no-decay" "" "" -scenario drift -label "no decay"
	stop_all
	run_pipeline "$OUT/drift/decay" "-half-life $DEMO_HALF_LIFE" "" -scenario drift -label "half-life $DEMO_HALF_LIFE" \
		-compare "no decay=$OUT/drift/no-decay"
	finish
	;;
new-items)
	levels=(-scenario new-items -context-levels 1,4)
	run_pipeline "$OUT/new-items/global" "" "" "${levels[@]}" -label "global prior"
	stop_all
	run_pipeline "$OUT/new-items/context" "" "-prior context -prior-refresh 2s -prior-min-trials 10" "${levels[@]}" \
		-label "per-context prior" -compare "global prior=$OUT/new-items/global"
	finish
	;;
*)
	echo "DEMO_SCENARIO=$DEMO_SCENARIO: not steady, drift or new-items" >&2
	exit 2
	;;
esac
