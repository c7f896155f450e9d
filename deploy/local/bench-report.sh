#!/usr/bin/env bash
# Assembles the benchmark report of make bench from what its steps wrote
# into DIR (default .local/bench): the benchstat summaries of the
# micro-benchmarks (sampler.stat, scorer.stat and the raw scorer.txt), and
# the end-to-end load runs' reports (ingest.md, score.md, their .headline
# files, charts and profiles). Writes DIR/report.md and prints the headline
# figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.local/bench}

# Median of the ns/candidate figures of one implementation of
# BenchmarkScoreCore in the raw benchmark output.
median_ns() {
  awk -v impl="impl=$1-" '$1 ~ "BenchmarkScoreCore/" impl { for (i = 1; i < NF; i++) if ($(i+1) == "ns/candidate") print $i }' "$dir/scorer.txt" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'
}

headlines() {
  if scorer=$(median_ns scorer) && baseline=$(median_ns baseline); then
    awk -v s="$scorer" -v b="$baseline" 'BEGIN { printf "scoring core (in process, 400 candidates, k = 20, 1M arms): %.0f ns/candidate, %.1fM candidates/s per core; baseline in the same run %.0f ns (%.1f× faster)\n", s, 1000 / s, b, b / s }'
  fi
  for f in ingest score; do
    [[ -f $dir/$f.md.headline ]] && cat "$dir/$f.md.headline"
  done
  return 0
}

# A report's own title becomes a section of this one.
section() { sed -e '1s/^# /## /' -e '2,$s/^## /### /' "$1"; }

{
  echo "# Benchmark report"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!*.md' 2>/dev/null || echo ' (with local changes)'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(go env GOVERSION), $(uname -sr). Made by \`make bench\`."
  echo
  echo "## Headline figures"
  echo
  headlines | sed 's/^/- /'
  echo
  echo "## Micro-benchmarks"
  echo
  echo "Each pass runs every benchmark once; the passes alternate, so a baseline and its contender are measured in the same stretches of a machine whose speed drifts. benchstat over the passes:"
  for f in sampler scorer; do
    echo
    echo '```'
    cat "$dir/$f.stat"
    echo '```'
  done
  for f in ingest score; do
    if [[ -f $dir/$f.md ]]; then
      echo
      section "$dir/$f.md"
    fi
  done
  echo
  echo "Profiles (go tool pprof): $(cd "$dir" && ls -- *.pprof 2>/dev/null | tr '\n' ' ')"
} >"$dir/report.md"

echo
echo "== headline figures (report: $dir/report.md)"
headlines
