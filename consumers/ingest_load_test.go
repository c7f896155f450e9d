package consumers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"gonum.org/v1/plot/plotter"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
)

// TestLoadIngestEndToEnd measures ingest on the real local stack: a
// backlog of BANDITSTREAM_LOAD_EVENTS events (~150 bytes, 6 partitions) is
// produced, then one bandit-ingest process consumes it into Redis (and
// Cassandra for session loads) while lag, CPU of each process and Redis
// commands are sampled every second. It is a measurement, not a test: it
// runs only when asked (make bench-ingest) and asserts only that every
// event was consumed.
func TestLoadIngestEndToEnd(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("BANDITSTREAM_LOAD_EVENTS"))
	if n <= 0 {
		t.Skip("set BANDITSTREAM_LOAD_EVENTS (make bench-ingest)")
	}
	e := newIngestEnv(t, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// Produce the backlog.
	gen := newEventGen(11, 10_000, 50_000)
	w := newWriter(e.brokers, e.topic)
	w.Compression = kafka.Lz4
	defer w.Close()
	start := time.Now()
	size := 0
	const chunk = 20_000
	for sent := 0; sent < n; sent += chunk {
		msgs := make([]kafka.Message, 0, chunk)
		for i := sent; i < min(sent+chunk, n); i++ {
			ev := gen.next()
			ev.SessionId = "s-" + ev.GetUserId()
			ev.Attributes = map[string]string{"category": "c-" + strconv.Itoa(i%97), "brand": "b-" + strconv.Itoa(i%31),
				"price_band": "p-" + strconv.Itoa(i%7), "color": "col-" + strconv.Itoa(i%13)}
			b, err := schemas.Protobuf.AppendInteraction(nil, ev)
			if err != nil {
				t.Fatal(err)
			}
			size += len(b)
			msgs = append(msgs, kafka.Message{Key: []byte(ev.GetUserId()), Value: b})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("producing: %.300v", err)
		}
	}
	produce := time.Since(start)

	// Consume it.
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	file := loadFiles(t, "ingest")
	profile, allocs := file(".cpu.pprof"), file(".alloc.pprof")
	ops := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, bin, nil, append(e.args(e.group), "-mode", "ingest", "-cpu-profile", profile, "-alloc-profile", allocs,
		"-ops-addr", ops)...)
	pids := map[string][]int{"bandit-ingest": {p.Pid()}, "kafka": stackPids(t, "kafka"), "redis": stackPids(t, "redis"), "cassandra": stackPids(t, "cassandra")}
	cpu0 := map[string]float64{}
	for name, pids := range pids {
		cpu0[name] = cpuSeconds(pids...)
	}
	cmds0 := redisCommands(ctx, t, e)
	mem0 := redisMemory(ctx, t, e)
	start = time.Now()
	var rows []string
	// Events applied per second, from bandit-ingest's own counter.
	var rate plotter.XYs
	prevT, prevApplied := 0.0, 0.0
	var firstCommit time.Time
	var lagAtFirst int64
	for {
		lag, err := stacktest.Lag(ctx, e.brokers, e.group, e.topic)
		if err != nil {
			t.Fatal(err)
		}
		if firstCommit.IsZero() && lag < int64(n) {
			firstCommit, lagAtFirst = time.Now(), lag
		}
		now := time.Since(start).Seconds()
		rows = append(rows, fmt.Sprintf("| %5.1f | %9d |", now, lag))
		if applied, err := counter(ops, "banditstream_events_total"); err == nil && now > prevT {
			rate = append(rate, plotter.XY{X: now, Y: (applied - prevApplied) / (now - prevT)})
			prevT, prevApplied = now, applied
		}
		if lag == 0 {
			break
		}
		if time.Since(start) > 25*time.Minute {
			t.Fatalf("lag %d after 25 minutes", lag)
		}
		time.Sleep(time.Second)
	}
	elapsed := time.Since(start)
	steady := time.Since(firstCommit)
	cmds := redisCommands(ctx, t, e) - cmds0
	memOn := redisMemory(ctx, t, e) - mem0
	cpu := map[string]float64{}
	for name, pids := range pids {
		cpu[name] = cpuSeconds(pids...) - cpu0[name]
	}
	stopTook, clean := p.Stop(30 * time.Second)

	// The same backlog again, by another group into another namespace,
	// with deduplication by event id off: the window's cost in the same
	// run.
	mem0 = redisMemory(ctx, t, e)
	offGroup := stacktest.UniqueName("it_ingest_nodedup")
	off := stacktest.StartProcess(t, bin, nil, append(e.args(offGroup), "-mode", "ingest", "-key-prefix", stacktest.UniqueName("it"), "-dedup-window", "0")...)
	offRate, offElapsed := drainRate(ctx, t, e, offGroup, n)
	memOff := redisMemory(ctx, t, e) - mem0
	off.Stop(30 * time.Second)

	// With BANDITSTREAM_LOAD_SCALE (process counts, e.g. "1,2"), the same
	// backlog again per count, by that many ingest processes in one group
	// into a namespace of its own: where the limit moves.
	var scaleRows []string
	scaleHeadline := ""
	if list := os.Getenv("BANDITSTREAM_LOAD_SCALE"); list != "" {
		redisPids, kafkaPids := stackPids(t, "redis"), stackPids(t, "kafka")
		for _, f := range strings.Split(list, ",") {
			procs, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || procs < 1 {
				t.Fatalf("BANDITSTREAM_LOAD_SCALE: %q is not a process count", f)
			}
			group, prefix := stacktest.UniqueName("it_ingest_scale"), stacktest.UniqueName("it")
			var ps []*stacktest.Process
			var ingestPids []int
			for range procs {
				p := stacktest.StartProcess(t, bin, nil, append(e.args(group), "-mode", "ingest", "-key-prefix", prefix)...)
				ps = append(ps, p)
				ingestPids = append(ingestPids, p.Pid())
			}
			in0, k0, r0 := cpuSeconds(ingestPids...), cpuSeconds(kafkaPids...), make([]float64, len(redisPids))
			for i, pid := range redisPids {
				r0[i] = cpuSeconds(pid)
			}
			t0 := time.Now()
			rate, _ := drainRate(ctx, t, e, group, n)
			secs := time.Since(t0).Seconds()
			inCores, kafkaCores, redisCores, busiest := (cpuSeconds(ingestPids...)-in0)/secs, (cpuSeconds(kafkaPids...)-k0)/secs, 0.0, 0.0
			for i, pid := range redisPids {
				c := (cpuSeconds(pid) - r0[i]) / secs
				redisCores += c
				busiest = max(busiest, c)
			}
			for _, p := range ps {
				p.Stop(30 * time.Second)
			}
			scaleRows = append(scaleRows, fmt.Sprintf("| %d | %.0f events/s | %.2f | %.2f (%d processes) | %.2f | %.2f |", procs, rate, inCores, redisCores, len(redisPids), busiest, kafkaCores))
			scaleHeadline += fmt.Sprintf("; %d ingest processes %.0f events/s", procs, rate)
		}
	}

	// With BANDITSTREAM_LOAD_BASELINE_INGEST (a bandit-ingest built from an
	// earlier commit: make bench-ingest builds the Makefile's BASELINE), the
	// same backlog twice more, each into a namespace and keyspace of its
	// own: by this build, then by the baseline. Their events per core-second
	// of ingest and of Redis, measured in the same run, cancel the
	// machine's speed.
	var baseRows []string
	baseHeadline := ""
	if base := os.Getenv("BANDITSTREAM_LOAD_BASELINE_INGEST"); base != "" {
		redisPids := stackPids(t, "redis")
		type pass struct{ rate, inCores, redisCores, perIngest, perRedis float64 }
		run := func(binary string, extra ...string) pass {
			group := stacktest.UniqueName("it_ingest_base")
			args := []string{"-kafka-brokers", strings.Join(e.brokers, ","), "-redis-addr", e.redis, "-topic", e.topic, "-group", group,
				"-key-prefix", stacktest.UniqueName("it"), "-shards", "64", "-session-timeout", "6s", "-fetch-max-wait", "100ms",
				"-cql-hosts", e.cql, "-cql-keyspace", stacktest.UniqueName("it"), "-log-level", "warn", "-mode", "ingest"}
			p := stacktest.StartProcess(t, binary, nil, append(args, extra...)...)
			in0, r0 := cpuSeconds(p.Pid()), cpuSeconds(redisPids...)
			t0 := time.Now()
			_, _ = drainRate(ctx, t, e, group, n)
			secs := time.Since(t0).Seconds()
			in, r := cpuSeconds(p.Pid())-in0, cpuSeconds(redisPids...)-r0
			p.Stop(30 * time.Second)
			return pass{rate: float64(n) / secs, inCores: in / secs, redisCores: r / secs, perIngest: float64(n) / in, perRedis: float64(n) / r}
		}
		cur := run(bin, "-cql-migrate")
		old := run(base) // it creates its keyspace itself
		name := os.Getenv("BANDITSTREAM_LOAD_BASELINE_NAME")
		row := func(label string, p pass) string {
			return fmt.Sprintf("| %s | %.0f | %.2f | %.2f | %.0f | %.0f |", label, p.rate, p.inCores, p.redisCores, p.perIngest, p.perRedis)
		}
		baseRows = []string{row("this build", cur), row("baseline "+name, old),
			fmt.Sprintf("| ratio | %.2f× | | | %.2f× | %.2f× |", cur.rate/old.rate, cur.perIngest/old.perIngest, cur.perRedis/old.perRedis)}
		baseHeadline = fmt.Sprintf("; against the baseline %s in the same run: %.2f× the events per ingest core-second, %.2f× per Redis core-second",
			name, cur.perIngest/old.perIngest, cur.perRedis/old.perRedis)
	}

	// On a cluster, the same backlog again with each batch waiting for a
	// replica of every master before its commit: the wait's cost.
	// Both passes come after the first, so neither pays for its warm-up.
	var noWaitRate, waitRate float64
	if stacktest.Topology() == "cluster" {
		pass := func(replicas string) float64 {
			group := stacktest.UniqueName("it_ingest_wait")
			p := stacktest.StartProcess(t, bin, nil, append(e.args(group), "-mode", "ingest", "-key-prefix", stacktest.UniqueName("it"), "-redis-wait-replicas", replicas)...)
			rate, _ := drainRate(ctx, t, e, group, n)
			p.Stop(30 * time.Second)
			return rate
		}
		noWaitRate, waitRate = pass("0"), pass("1")
	}

	var report strings.Builder
	fmt.Fprintf(&report, "# Ingest load run\n\n%d events, %.0f bytes each on average, 6 partitions, one bandit-ingest process, %d users, %d items; the %s topology; %s, %d CPUs\n\n",
		n, float64(size)/float64(n), gen.users, gen.items, stacktest.Topology(), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU())
	fmt.Fprintf(&report, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&report, "| produce (lz4, acks=all, one producer) | %.0f events/s |\n", float64(n)/produce.Seconds())
	fmt.Fprintf(&report, "| ingest, start to lag 0 (group join, 10k session loads included) | %.0f events/s (%.1f s) |\n", float64(n)/elapsed.Seconds(), elapsed.Seconds())
	headline := fmt.Sprintf("ingest: %.0f events/s start to lag 0", float64(n)/elapsed.Seconds())
	if !firstCommit.IsZero() && steady > 0 && lagAtFirst > 0 {
		fmt.Fprintf(&report, "| ingest, first commit to lag 0 | %.0f events/s (%d events in %.1f s) |\n", float64(lagAtFirst)/steady.Seconds(), lagAtFirst, steady.Seconds())
		headline = fmt.Sprintf("ingest: %.0f events/s from the first commit to lag 0", float64(lagAtFirst)/steady.Seconds())
	}
	headline += fmt.Sprintf(" (%d events, bandit-ingest %.2f cores, Redis %.2f cores; without deduplication by event id %.0f events/s)", n, cpu["bandit-ingest"]/elapsed.Seconds(), cpu["redis"]/elapsed.Seconds(), offRate)
	fmt.Fprintf(&report, "| Redis commands | %.0f /s |\n", float64(cmds)/elapsed.Seconds())
	fmt.Fprintf(&report, "| Redis memory of the namespace | %.1f MiB |\n", float64(memOn)/(1<<20))
	onRate := float64(n) / elapsed.Seconds()
	if !firstCommit.IsZero() && lagAtFirst > 0 {
		onRate = float64(lagAtFirst) / steady.Seconds()
	}
	fmt.Fprintf(&report, "\nDeduplication by event id (the window, 256 events per user, on by default) against off (-dedup-window 0), the same backlog consumed again by another group into another namespace right after:\n\n")
	fmt.Fprintf(&report, "| | dedup on | dedup off |\n|---|--:|--:|\n")
	fmt.Fprintf(&report, "| first commit to lag 0 | %.0f events/s | %.0f events/s (%.1f s start to lag 0) |\n", onRate, offRate, offElapsed.Seconds())
	fmt.Fprintf(&report, "| Redis memory of the namespace | %.1f MiB | %.1f MiB |\n\n", float64(memOn)/(1<<20), float64(memOff)/(1<<20))
	if waitRate > 0 {
		fmt.Fprintf(&report, "Waiting for a replica of every master before each commit (-redis-wait-replicas 1) against not waiting, the same backlog consumed twice more, each time by another group into another namespace:\n\n")
		fmt.Fprintf(&report, "| | no wait | wait for 1 replica |\n|---|--:|--:|\n| first commit to lag 0 | %.0f events/s | %.0f events/s (%.2f×) |\n\n", noWaitRate, waitRate, waitRate/noWaitRate)
		headline += fmt.Sprintf("; on the cluster, %.0f events/s not waiting for replicas against %.0f waiting for one", noWaitRate, waitRate)
	}
	if len(baseRows) > 0 {
		headline += baseHeadline
		fmt.Fprintf(&report, "This build against the baseline, the same backlog consumed by each into a namespace and keyspace of its own, one after the other (start to lag 0, group join and session loads included):\n\n")
		fmt.Fprintf(&report, "| build | events/s | ingest cores | Redis cores | events per ingest core-second | events per Redis core-second |\n|---|--:|--:|--:|--:|--:|\n%s\n\n", strings.Join(baseRows, "\n"))
	}
	if len(scaleRows) > 0 {
		headline += scaleHeadline
		fmt.Fprintf(&report, "Scale-out on the %s topology: the same backlog consumed again per row by that many bandit-ingest processes in one group (CPU from start to lag 0, group join included; on a cluster masters and replicas both count):\n\n", stacktest.Topology())
		fmt.Fprintf(&report, "| ingest processes | first commit to lag 0 | bandit-ingest cores | Redis cores | busiest Redis process, cores | Kafka cores |\n|--:|--:|--:|--:|--:|--:|\n%s\n\n", strings.Join(scaleRows, "\n"))
	}
	for _, name := range []string{"bandit-ingest", "kafka", "redis", "cassandra"} {
		fmt.Fprintf(&report, "| CPU %s | %.2f cores |\n", name, cpu[name]/elapsed.Seconds())
	}
	fmt.Fprintf(&report, "| SIGTERM to exit | %.2f s (clean: %v) |\n", stopTook.Seconds(), clean)
	chart := file("-throughput.png")
	if err := writeChart(chart, "Ingest: events per second (counted as each batch of up to 4 MiB per partition completes)", "seconds", "events/s", line{"bandit-ingest", rate}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&report, "\n![events per second](%s)\n", filepath.Base(chart))
	fmt.Fprintf(&report, "\nCPU profile of bandit-ingest (%s; go tool pprof -top):\n\n```\n%s```\n", filepath.Base(profile), pprofTop(t, bin, profile))
	fmt.Fprintf(&report, "\nAllocations of bandit-ingest (%s; go tool pprof -top -sample_index=alloc_space):\n\n```\n%s```\n",
		filepath.Base(allocs), pprofTop(t, bin, allocs, "-sample_index=alloc_space"))
	stats, err := e.rdb.Info(ctx, "commandstats").Result()
	if err == nil {
		fmt.Fprintf(&report, "\nRedis commandstats (whole server, since start):\n\n```\n%s```\n", stats)
	}
	fmt.Fprintf(&report, "\nLag over time:\n\n| s | lag |\n|---|---|\n%s\n", strings.Join(rows, "\n"))
	writeLoadReport(t, report.String(), headline)
}

// writeLoadReport writes the report to BANDITSTREAM_LOAD_REPORT and its
// headline, one line, next to it (<report>.headline), and logs both.
func writeLoadReport(t *testing.T, report, headline string) {
	t.Log("\n" + report + "\n" + headline)
	if out := os.Getenv("BANDITSTREAM_LOAD_REPORT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out+".headline", []byte(headline+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stackPids are the pids of a service of the local stack: of each of its
// nodes in the cluster topology.
func stackPids(t *testing.T, service string) []int {
	_, file, _, _ := runtime.Caller(0)
	names := []string{service}
	if stacktest.Topology() == "cluster" {
		switch service {
		case "redis":
			names = []string{"redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6"}
		case "kafka":
			names = []string{"kafka-1", "kafka-2", "kafka-3"}
		}
	}
	var pids []int
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", ".local", name, "server.pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cpuSeconds is the user+system CPU time of processes so far.
func cpuSeconds(pids ...int) float64 {
	total := 0.0
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		total += (utime + stime) / 100 // USER_HZ
	}
	return total
}

func redisCommands(ctx context.Context, t *testing.T, e *ingestEnv) int64 {
	return redisInfo(ctx, t, e, "stats", "total_commands_processed")
}

// redisMemory is the memory Redis holds for data, in bytes.
func redisMemory(ctx context.Context, t *testing.T, e *ingestEnv) int64 {
	return redisInfo(ctx, t, e, "memory", "used_memory")
}

// redisInfo is a field of INFO section, summed over the masters of a
// cluster.
func redisInfo(ctx context.Context, t *testing.T, e *ingestEnv, section, field string) int64 {
	read := func(ctx context.Context, c redis.UniversalClient) int64 {
		info, err := c.Info(ctx, section).Result()
		if err != nil {
			t.Error(err)
			return 0
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return 0
	}
	cc, ok := e.rdb.(*redis.ClusterClient)
	if !ok {
		return read(ctx, e.rdb)
	}
	var total atomic.Int64
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		total.Add(read(ctx, c))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return total.Load()
}

// drainRate waits until group has consumed the n events of e's topic and
// returns its rate from the first commit to lag 0, and the time from its
// start.
func drainRate(ctx context.Context, t *testing.T, e *ingestEnv, group string, n int) (float64, time.Duration) {
	start := time.Now()
	var first time.Time
	var lagAtFirst int64
	for {
		lag, err := stacktest.Lag(ctx, e.brokers, group, e.topic)
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() && lag < int64(n) {
			first, lagAtFirst = time.Now(), lag
		}
		if lag == 0 {
			break
		}
		if time.Since(start) > 25*time.Minute {
			t.Fatalf("%s: lag %d after 25 minutes", group, lag)
		}
		time.Sleep(time.Second)
	}
	elapsed := time.Since(start)
	if first.IsZero() || lagAtFirst == 0 {
		return float64(n) / elapsed.Seconds(), elapsed
	}
	return float64(lagAtFirst) / time.Since(first).Seconds(), elapsed
}
