package consumers_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gonum.org/v1/plot/plotter"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// TestLoadScoreEndToEnd measures the scoring path on the real local stack:
// requests of 400 candidates (from a catalogue of 100k arms in the hot
// tier, 5,000 users) are produced at each rate of BANDITSTREAM_LOAD_RATES
// (requests/s, comma separated) for BANDITSTREAM_LOAD_SECONDS each,
// BANDITSTREAM_LOAD_SCORERS bandit-score processes in one group (default
// one) answer them, and this process reads the results:
// achieved requests/s and candidates/s, end-to-end latency from the
// producer's send to the result's arrival (p50, p99, max), and the CPU of
// every process. With BANDITSTREAM_LOAD_UNTIL_SATURATED set, the steps stop
// at the first rate the scorer does not keep up with (answered below 97% of
// offered, or answers still missing 5 s after the step), and the report
// names the knee: the highest rate answered in full. Per step it also
// reports the breakdown the responses' timing carries (the wait in the
// topic, the batch's lookup, the request's sampling) and the scorer's
// publish time. Last, at a low rate, requests of users never seen before
// and of hot users alternate: what a first request costs. It is a
// measurement, not a test: it runs only when asked (make bench-score) and
// asserts only that every request was answered.
func TestLoadScoreEndToEnd(t *testing.T) {
	var rates []int
	for _, f := range strings.Split(os.Getenv("BANDITSTREAM_LOAD_RATES"), ",") {
		if r, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && r > 0 {
			rates = append(rates, r)
		}
	}
	if len(rates) == 0 {
		t.Skip("set BANDITSTREAM_LOAD_RATES (make bench-score)")
	}
	seconds, _ := strconv.Atoi(os.Getenv("BANDITSTREAM_LOAD_SECONDS"))
	if seconds <= 0 {
		seconds = 20
	}
	untilSaturated := os.Getenv("BANDITSTREAM_LOAD_UNTIL_SATURATED") != ""
	scorers := 1
	if v := os.Getenv("BANDITSTREAM_LOAD_SCORERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BANDITSTREAM_LOAD_SCORERS: %q is not a process count", v)
		}
		scorers = n
	}
	const (
		partitions = 6
		users      = 5_000
		candidates = 400
		k          = 20
	)
	// The catalogue: BANDITSTREAM_LOAD_ARMS arms (default 100k) in the
	// hot tier; the warm-up caches nearly all of them.
	items := 100_000
	if v := os.Getenv("BANDITSTREAM_LOAD_ARMS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < candidates {
			t.Fatalf("BANDITSTREAM_LOAD_ARMS: %q is not an arm count of at least %d", v, candidates)
		}
		items = n
	}
	e := newScoreEnv(t, partitions)
	counts := map[state.Arm]state.Counts{}
	for i := 0; i < items; i++ {
		imp := int64(50 + (i*7919)%5000)
		counts[state.Arm{Context: "home", Item: "sku-" + strconv.Itoa(i)}] = state.Counts{ByType: [state.NumEventTypes]int64{imp, imp * int64(i%50) / 1000}}
	}
	e.seedArms(t, counts)

	// Request bodies: 64 candidate lists, encoded once; each request adds
	// its own id, user and send time in front.
	r := rand.New(rand.NewPCG(5, 6))
	var bodies [][]byte
	for b := 0; b < max(64, 4*items/candidates); b++ {
		req := &schemas.ScoreRequest{Context: "home", K: k}
		for j := 0; j < candidates; j++ {
			req.Candidates = append(req.Candidates, "sku-"+strconv.Itoa(r.IntN(items)))
		}
		body, err := schemas.Protobuf.AppendScoreRequest(nil, req)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	// A warm-up step of two requests per user loads the sessions (a load
	// the scorer has no room for is tried again on the user's next request)
	// and caches the arms (each about ten times over, whatever their
	// number); it is reported apart.
	const warmRate = users / 5
	warmSeconds := max(10, 10*items/(warmRate*candidates))
	// The first-request step: requests of never-seen users and of hot
	// ones, alternating, at a rate that queues nothing.
	const firstRate, firstSeconds = 200, 10
	total := warmRate*warmSeconds + firstRate*firstSeconds
	for _, rate := range rates {
		total += rate * seconds
	}
	sent := make([]int64, total) // Unix ns of each request's send
	lat := make([]int64, total)  // ns from send to result, 0 until answered
	// The responses' timing, in µs: the wait in the topic, the batch's
	// lookup, the request's sampling.
	queue, lookup, sampling := make([]int32, total), make([]int32, total), make([]int32, total)
	var answered atomic.Int64

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	readCtx, stopReading := context.WithCancel(ctx)
	var readers sync.WaitGroup
	for p := 0; p < partitions; p++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rd := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.results, Partition: p, MinBytes: 1, MaxWait: 20 * time.Millisecond, MaxBytes: 8 << 20})
			defer rd.Close()
			for {
				m, err := rd.ReadMessage(readCtx)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				n, err := strconv.Atoi(strings.TrimPrefix(string(m.Key), "L"))
				if err != nil || n >= total {
					continue
				}
				if atomic.CompareAndSwapInt64(&lat[n], 0, now-atomic.LoadInt64(&sent[n])) {
					q, l, s := responseTiming(m.Value)
					atomic.StoreInt32(&queue[n], q)
					atomic.StoreInt32(&lookup[n], l)
					atomic.StoreInt32(&sampling[n], s)
					answered.Add(1)
				}
			}
		}()
	}

	bin := stacktest.BuildBinary(t, "./cmd/bandit-score")
	file := loadFiles(t, "score")
	profile, allocs := file(".cpu.pprof"), file(".alloc.pprof")
	// The first process is profiled, and its session loads are watched.
	ops := stacktest.FreeAddr(t)
	var ps []*stacktest.Process
	var scorePids []int
	for i := range scorers {
		args := []string{"-kafka-brokers", strings.Join(e.brokers, ","), "-redis-addr", e.redis, "-cql-hosts", e.cql, "-cql-keyspace", e.keyspace, "-cql-migrate",
			"-topic", e.requests, "-results-topic", e.results, "-group", e.group, "-key-prefix", e.prefix, "-shards", "16",
			"-session-timeout", "6s", "-log-level", "warn"}
		if i == 0 {
			args = append(args, "-cpu-profile", profile, "-alloc-profile", allocs, "-ops-addr", ops)
		}
		p := stacktest.StartProcess(t, bin, nil, args...)
		ps = append(ps, p)
		scorePids = append(scorePids, p.Pid())
	}
	pids := map[string][]int{"bandit-score": scorePids, "load generator (this test)": {os.Getpid()},
		"kafka": stackPids(t, "kafka"), "redis": stackPids(t, "redis"), "cassandra": stackPids(t, "cassandra")}
	names := []string{"bandit-score", "load generator (this test)", "kafka", "redis", "cassandra"}

	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.requests, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
		Async: true, BatchSize: 1000, BatchBytes: 16 << 20, BatchTimeout: time.Millisecond, Compression: kafka.Lz4}
	var sendErrs atomic.Int64
	w.Completion = func(_ []kafka.Message, err error) {
		if err != nil {
			sendErrs.Add(1)
		}
	}
	defer w.Close()

	var report strings.Builder
	procs := "One bandit-score process"
	if scorers > 1 {
		procs = fmt.Sprintf("%d bandit-score processes in one group", scorers)
	}
	fmt.Fprintf(&report, "# Scoring load run\n\n%s (GOMAXPROCS %d each), %d partitions, requests of %d candidates from %d arms, k = %d, %d users (sessions on), lz4 requests, acks=all; Kafka, Redis and Cassandra on the same %d-CPU machine. Latency: from the producer's send to the result's arrival in this process.\n\n",
		procs, runtime.NumCPU(), partitions, candidates, items, k, users, runtime.NumCPU())
	fmt.Fprintf(&report, "| offered req/s | answered req/s | candidates/s | p50 ms | p99 ms | max ms | %s |\n|---|---|---|---|---|---|%s\n",
		strings.Join(names, " cores | ")+" cores", strings.Repeat("---|", len(names)))
	var breakdown strings.Builder // per step, from the responses' timing
	fmt.Fprintf(&breakdown, "\nWhere the time went, per step (p50 / p99 over the step's responses; the publish is the scorer's mean per batch):\n\n"+
		"| offered req/s | in the topic ms | lookup ms (per batch) | sampling ms | publish ms (mean per batch) |\n|---|---|---|---|---|\n")
	knee := 0

	var pcts [4]plotter.XYs // p50, p90, p99, max by offered rate
	var steps []string      // the headline's
	var best float64
	runStart := time.Now()
	next := 0
	for step, rate := range append([]int{warmRate}, rates...) {
		seconds := seconds
		if step == 0 {
			seconds = warmSeconds
		}
		first := next
		cpu0 := map[string]float64{}
		for name, pids := range pids {
			cpu0[name] = cpuSeconds(pids...)
		}
		pubSum0, _ := counter(ops, "banditstream_publish_seconds_sum")
		pubN0, _ := counter(ops, "banditstream_publish_seconds_count")
		start := time.Now()
		sendAt(ctx, t, w, rate, seconds, &next, sent, bodies, func(n int) string { return "u" + strconv.Itoa(n%users) })
		// Wait for this step's answers before the next rate: at most 5 s
		// when looking for the knee (a step that needs longer is past it),
		// 60 s otherwise.
		wait := 60 * time.Second
		if untilSaturated && step > 0 {
			wait = 5 * time.Second
		}
		for deadline := time.Now().Add(wait); answered.Load() < int64(next) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		elapsed := time.Since(start)
		saturated := answered.Load() < int64(next)
		var ls []int64
		for i := first; i < next; i++ {
			if l := atomic.LoadInt64(&lat[i]); l > 0 {
				ls = append(ls, l)
			}
		}
		slices.Sort(ls)
		pct := func(q float64) float64 { return float64(quantile(ls, q)) / 1e6 }
		label := strconv.Itoa(rate)
		if step == 0 {
			label += " (warm-up: two requests per user)"
		}
		achieved := float64(len(ls)) / elapsed.Seconds()
		saturated = saturated || achieved < 0.97*float64(rate)
		row := fmt.Sprintf("| %s | %.0f | %.0f | %.1f | %.1f | %.1f |", label, achieved,
			achieved*candidates, pct(0.5), pct(0.99), pct(1))
		pubSum, _ := counter(ops, "banditstream_publish_seconds_sum")
		pubN, _ := counter(ops, "banditstream_publish_seconds_count")
		fmt.Fprintf(&breakdown, "| %s | %s | %s | %s | %.1f |\n", label, timingPcts(queue[first:next]), timingPcts(lookup[first:next]),
			timingPcts(sampling[first:next]), 1000*(pubSum-pubSum0)/max(pubN-pubN0, 1))
		if step > 0 {
			for i, q := range []float64{0.5, 0.9, 0.99, 1} {
				pcts[i] = append(pcts[i], plotter.XY{X: float64(rate), Y: pct(q)})
			}
			// The headline: every step, offered → answered, p50/p99.
			steps = append(steps, fmt.Sprintf("%d → %.0f (%.0f/%.0f ms)", rate, achieved, pct(0.5), pct(0.99)))
			best = max(best, achieved)
		}
		for _, name := range names {
			row += fmt.Sprintf(" %.2f |", (cpuSeconds(pids[name]...)-cpu0[name])/elapsed.Seconds())
		}
		fmt.Fprintln(&report, row)
		t.Log(row)
		if step > 0 && untilSaturated {
			if saturated {
				fmt.Fprintf(&report, "| (past the knee: the steps stop here) | | | | | | %s\n", strings.Repeat(" |", len(names)))
				break
			}
			knee = rate
		} else if len(ls) != next-first {
			t.Errorf("rate %d: %d of %d requests answered within 60 s of the step's end", rate, len(ls), next-first)
		}
		if step == 0 {
			// The warm-up's answers do not wait for the session loads they
			// start; let those finish (the count stays put for 2 s) before
			// the measured steps.
			waited := time.Now()
			last, still := -1.0, time.Now()
			for time.Since(waited) < 60*time.Second && time.Since(still) < 2*time.Second {
				if n, err := counter(ops, "banditstream_session_loads_total"); err == nil && n != last {
					last, still = n, time.Now()
				}
				time.Sleep(100 * time.Millisecond)
			}
			fmt.Fprintf(&report, "| (%.0f sessions loaded by the first process; %.1f s more for the last loads to finish) | | | | | | %s\n",
				last, time.Since(waited).Seconds(), strings.Repeat(" |", len(names)))
		}
	}
	// Past the knee, the backlog drains before the first-request step:
	// nothing may be lost.
	for deadline := time.Now().Add(3 * time.Minute); answered.Load() < int64(next) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if n := answered.Load(); n < int64(next) {
		t.Errorf("%d of %d requests answered 3 minutes after the last step", n, next)
	}
	if knee > 0 {
		fmt.Fprintf(&report, "\nKnee: %d requests/s (%.2fM candidates/s) answered in full; the next step was not.\n", knee, float64(knee*candidates)/1e6)
	}
	report.WriteString(breakdown.String())
	first := firstRequests(t, ctx, w, firstRate, firstSeconds, &next, sent, lat, &answered, bodies, ops, users)
	report.WriteString(first)
	var rss []string
	for _, p := range ps {
		rss = append(rss, fmt.Sprintf("%.0f MiB", float64(rssBytes(p.Pid()))/(1<<20)))
	}
	cached, _ := counter(ops, "banditstream_arm_cache_arms")
	fmt.Fprintf(&report, "\nResident memory of bandit-score after the steps, %.0f arms in its cache: %s.\n", cached, strings.Join(rss, ", "))
	stopReading()
	readers.Wait()
	var stopTook time.Duration
	clean := true
	for _, p := range ps {
		took, ok := p.Stop(30 * time.Second)
		stopTook, clean = max(stopTook, took), clean && ok
	}
	fmt.Fprintf(&report, "\nSend errors: %d. SIGTERM to exit (the slowest process): %.2f s (clean: %v). Answered rate counts each step from its first send to its last answer.\n", sendErrs.Load(), stopTook.Seconds(), clean)
	baseHeadline := ""
	if base := os.Getenv("BANDITSTREAM_LOAD_BASELINE_SCORE"); base != "" {
		var rows string
		rows, baseHeadline = scoreBaseline(ctx, t, e, bin, base, bodies, users, candidates)
		report.WriteString(rows)
	}

	// Requests sent and answered per second over the whole run.
	var offered, done plotter.XYs
	for i := 0; i < next; i++ {
		at := float64(atomic.LoadInt64(&sent[i])-runStart.UnixNano()) / 1e9
		offered = bump(offered, at)
		if l := atomic.LoadInt64(&lat[i]); l > 0 {
			done = bump(done, at+float64(l)/1e9)
		}
	}
	charts := []struct {
		file, title, x, y string
		lines             []line
	}{
		{"-throughput.png", "Scoring: requests per second (3-s moving average)", "seconds", "requests/s",
			[]line{{"sent", smooth(offered, 3)}, {"answered", smooth(done, 3)}}},
		{"-latency.png", "Scoring: latency from send to result, per offered rate", "offered requests/s", "ms",
			[]line{{"p50", pcts[0]}, {"p90", pcts[1]}, {"p99", pcts[2]}, {"max", pcts[3]}}},
	}
	for _, c := range charts {
		if err := writeChart(file(c.file), c.title, c.x, c.y, c.lines...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&report, "\n![%s](%s)\n", c.title, filepath.Base(file(c.file)))
	}
	profiled := "bandit-score"
	if scorers > 1 {
		profiled = "the first bandit-score process"
	}
	fmt.Fprintf(&report, "\nCPU profile of %s over the whole run (%s; go tool pprof -top):\n\n```\n%s```\n", profiled, filepath.Base(profile), pprofTop(t, bin, profile))
	fmt.Fprintf(&report, "\nAllocations of %s over the whole run (%s; go tool pprof -top -sample_index=alloc_space):\n\n```\n%s```\n",
		profiled, filepath.Base(allocs), pprofTop(t, bin, allocs, "-sample_index=alloc_space"))
	kneeText := ""
	if knee > 0 {
		kneeText = fmt.Sprintf("; knee %d requests/s", knee)
	}
	headline := fmt.Sprintf("scoring, %s, %d candidates per request: up to %.0f requests/s answered (%.2fM candidates/s)%s; requests/s offered → answered (p50/p99 latency): %s",
		strings.ToLower(procs[:1])+procs[1:], candidates, best, best*candidates/1e6, kneeText, strings.Join(steps, ", ")) + baseHeadline
	writeLoadReport(t, report.String(), headline)
}

// scoreBaseline has this build and the baseline build (base, from an
// earlier commit) each drain the same backlog of requests of hot users,
// one after the other, with one process and sessions off (what is
// compared is the scoring: the baseline's cold schema may differ), and
// reports their requests/s and candidates per core-second, measured in the
// same run.
func scoreBaseline(ctx context.Context, t *testing.T, e *scoreEnv, bin, base string, bodies [][]byte, users, candidates int) (string, string) {
	t.Helper()
	const backlog = 30_000
	topic := stacktest.CreateTopic(t, e.brokers, "it_requests_backlog", 6)
	stacktest.CreateTopicNamed(t, e.brokers, topic+schemas.DeadLetterSuffix, 1)
	results := stacktest.CreateTopic(t, e.brokers, "it_results_backlog", 6)
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
		BatchSize: 1000, BatchBytes: 16 << 20, BatchTimeout: time.Millisecond, Compression: kafka.Lz4}
	defer w.Close()
	for sent := 0; sent < backlog; sent += 1000 {
		msgs := make([]kafka.Message, 0, 1000)
		for n := sent; n < sent+1000; n++ {
			user := "u" + strconv.Itoa(n%users)
			msgs = append(msgs, kafka.Message{Key: []byte(user), Value: requestValue("B"+strconv.Itoa(n), user, bodies[n%len(bodies)])})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("producing the backlog: %v", err)
		}
	}
	type pass struct{ rate, cores, perCore float64 }
	run := func(binary string, extra ...string) pass {
		group := stacktest.UniqueName("it_scorer_base")
		args := []string{"-kafka-brokers", strings.Join(e.brokers, ","), "-redis-addr", e.redis, "-cql-hosts", e.cql,
			"-topic", topic, "-results-topic", results, "-group", group, "-key-prefix", e.prefix, "-shards", "16",
			"-session-timeout", "6s", "-sessions=false", "-log-level", "warn"}
		p := stacktest.StartProcess(t, binary, nil, append(args, extra...)...)
		cpu0 := cpuSeconds(p.Pid())
		t0 := time.Now()
		for {
			lag, err := stacktest.Lag(ctx, e.brokers, group, topic)
			if err == nil && lag == 0 {
				break
			}
			if time.Since(t0) > 10*time.Minute {
				t.Fatalf("%s: lag %d after 10 minutes (%v)", binary, lag, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		secs, cpu := time.Since(t0).Seconds(), cpuSeconds(p.Pid())-cpu0
		p.Stop(30 * time.Second)
		return pass{rate: backlog / secs, cores: cpu / secs, perCore: backlog * float64(candidates) / cpu}
	}
	cur := run(bin, "-cql-keyspace", e.keyspace)
	old := run(base, "-cql-keyspace", stacktest.UniqueName("it")) // it creates its keyspace itself
	name := os.Getenv("BANDITSTREAM_LOAD_BASELINE_NAME")
	var b strings.Builder
	fmt.Fprintf(&b, "\nThis build against the baseline %s: each drains the same backlog of %d requests (hot users' arms, %d candidates each) with one process, sessions off, one after the other (start to lag 0, group join included):\n\n", name, backlog, candidates)
	fmt.Fprintf(&b, "| build | requests/s | bandit-score cores | candidates per core-second |\n|---|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| this build | %.0f | %.2f | %.0f |\n| baseline %s | %.0f | %.2f | %.0f |\n| ratio | %.2f× | | %.2f× |\n",
		cur.rate, cur.cores, cur.perCore, name, old.rate, old.cores, old.perCore, cur.rate/old.rate, cur.perCore/old.perCore)
	return b.String(), fmt.Sprintf("; draining a backlog against the baseline %s: %.2f× the requests/s, %.2f× the candidates per core-second", name, cur.rate/old.rate, cur.perCore/old.perCore)
}

// requestValue is a load run's request: its id and user in front of one
// of the encoded candidate lists.
func requestValue(id, user string, body []byte) []byte {
	v := protowire.AppendTag(nil, 1, protowire.BytesType)
	v = protowire.AppendString(v, id)
	v = protowire.AppendTag(v, 2, protowire.BytesType)
	v = protowire.AppendString(v, user)
	return append(v, body...)
}

// sendAt produces requests *next, *next+1, … at rate per second for
// seconds, request n of user(n), recording each one's send time in sent.
func sendAt(ctx context.Context, t *testing.T, w *kafka.Writer, rate, seconds int, next *int, sent []int64, bodies [][]byte, user func(n int) string) {
	t.Helper()
	first, start := *next, time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < time.Duration(seconds)*time.Second {
		<-tick.C
		due := first + int(float64(rate)*time.Since(start).Seconds())
		var msgs []kafka.Message
		for ; *next < due && *next < first+rate*seconds; *next++ {
			n := *next
			u := user(n)
			atomic.StoreInt64(&sent[n], time.Now().UnixNano())
			msgs = append(msgs, kafka.Message{Key: []byte(u), Value: requestValue("L"+strconv.Itoa(n), u, bodies[n%len(bodies)])})
		}
		if len(msgs) > 0 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Fatalf("producing: %v", err)
			}
		}
	}
}

// rssBytes is a process's resident memory (VmRSS).
func rssBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// responseTiming reads the queue, lookup and sampling µs of a protobuf
// ScoreResponse's timing (field 6), without decoding the rest.
func responseTiming(v []byte) (queue, lookup, sampling int32) {
	for len(v) > 0 {
		num, typ, n := protowire.ConsumeTag(v)
		if n < 0 {
			return
		}
		v = v[n:]
		if num == 6 && typ == protowire.BytesType {
			tm, n := protowire.ConsumeBytes(v)
			if n < 0 {
				return
			}
			for len(tm) > 0 {
				f, ft, n := protowire.ConsumeTag(tm)
				if n < 0 || ft != protowire.VarintType {
					return
				}
				x, m := protowire.ConsumeVarint(tm[n:])
				if m < 0 {
					return
				}
				tm = tm[n+m:]
				switch f {
				case 5:
					queue = int32(min(x, 1<<31-1))
				case 6:
					lookup = int32(min(x, 1<<31-1))
				case 7:
					sampling = int32(min(x, 1<<31-1))
				}
			}
			return
		}
		n = protowire.ConsumeFieldValue(num, typ, v)
		if n < 0 {
			return
		}
		v = v[n:]
	}
	return
}

// timingPcts is "p50 / p99" in ms of answered requests' µs.
func timingPcts(us []int32) string {
	var xs []int32
	for i := range us {
		if v := atomic.LoadInt32(&us[i]); v > 0 {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return "–"
	}
	slices.Sort(xs)
	return fmt.Sprintf("%.2f / %.2f", float64(quantile(xs, 0.5))/1000, float64(quantile(xs, 0.99))/1000)
}

// quantile is the q-quantile of sorted xs, 0 for none.
func quantile[T int32 | int64](sorted []T, q float64) T {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// firstRequests sends, at rate for seconds, requests alternately of users
// never seen before (their first request: a session load, one cold-tier
// read) and of users the warm-up made hot, and reports the latency of
// each kind.
func firstRequests(t *testing.T, ctx context.Context, w *kafka.Writer, rate, seconds int, next *int, sent, lat []int64,
	answered *atomic.Int64, bodies [][]byte, ops string, users int) string {
	t.Helper()
	loads0, _ := counter(ops, "banditstream_session_loads_total")
	first := *next
	sendAt(ctx, t, w, rate, seconds, next, sent, bodies, func(n int) string {
		if (n-first)%2 == 0 {
			return "new-" + strconv.Itoa(n)
		}
		return "u" + strconv.Itoa(n%users) // hot since the warm-up
	})
	for deadline := time.Now().Add(60 * time.Second); answered.Load() < int64(*next) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	loads, _ := counter(ops, "banditstream_session_loads_total")
	var cold, hot []int64
	for i := first; i < *next; i++ {
		if l := atomic.LoadInt64(&lat[i]); l > 0 {
			if (i-first)%2 == 0 {
				cold = append(cold, l)
			} else {
				hot = append(hot, l)
			}
		}
	}
	if len(cold)+len(hot) != *next-first {
		t.Errorf("first requests: %d of %d answered", len(cold)+len(hot), *next-first)
	}
	slices.Sort(cold)
	slices.Sort(hot)
	q := func(ls []int64, p float64) float64 { return float64(quantile(ls, p)) / 1e6 }
	return fmt.Sprintf("\nFirst requests, at %d requests/s for %d s, alternating (latency from send to result; the first process's session loads):\n\n"+
		"| requests of | answered | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n"+
		"| users never seen before (a session load each: one cold-tier read) | %d | %.1f | %.1f | %.1f |\n"+
		"| hot users | %d | %.1f | %.1f | %.1f |\n\n%.0f session loads by the first process during the step.\n",
		rate, seconds, len(cold), q(cold, 0.5), q(cold, 0.99), q(cold, 1), len(hot), q(hot, 0.5), q(hot, 0.99), q(hot, 1), loads-loads0)
}

// bump counts one event at second at into a per-second series.
func bump(xys plotter.XYs, at float64) plotter.XYs {
	i := max(0, int(at))
	for len(xys) <= i {
		xys = append(xys, plotter.XY{X: float64(len(xys))})
	}
	xys[i].Y++
	return xys
}
