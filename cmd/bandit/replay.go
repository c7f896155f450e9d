package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
)

// replayCommand re-reads a range of a topic into the stores (events) or
// into a results topic (score requests).
func replayCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	keys := hot.DefaultKeys()
	topic := fs.String("topic", config.TopicInteractions, "topic to replay")
	kind := fs.String("kind", "auto", "events (into the stores) or requests (scored into -results-topic); auto: requests if the topic's name has \"request\" in it")
	partitions := fs.String("partitions", "", "partitions to replay, comma separated (default all)")
	from := fs.String("from", "earliest", "start: earliest, an offset, or a time (RFC 3339, e.g. 2026-11-22T10:00:00Z) for the first record stamped at or after it")
	to := fs.String("to", "end", "end (exclusive): end, an offset, or a time")
	prefix := fs.String("key-prefix", keys.Prefix, "hot tier namespace to replay into; the live one by default, another for a shadow rebuild")
	shards := fs.Int("shards", keys.Shards, "arm shards of that namespace")
	halfLife := fs.Duration("half-life", 0, "decay half-life of that namespace's arm counts (the same as its bandit-ingest's; 0: none)")
	historyCap := fs.Int("history-cap", store.DefaultTierConfig().HistoryCap, "recent events kept per hot user")
	userCounts := fs.Int("user-counts", store.DefaultTierConfig().UserCounts, "own counts kept per user (the same as bandit-ingest's)")
	dedupWindow := fs.Int("dedup-window", store.DefaultTierConfig().DedupWindow, "latest events per user whose ids are remembered (the same as bandit-ingest's; 0: by offset only)")
	resultsTopic := fs.String("results-topic", "", "for requests: topic the responses go to (never the live "+config.TopicScoreResults+")")
	live := fs.String("live-key-prefix", keys.Prefix, "the live namespace: a replay into any other is a shadow, whose keys expire after -shadow-ttl")
	shadowTTL := fs.Duration("shadow-ttl", 24*time.Hour, "time to live set on every key of a shadow namespace once the replay ends (0: kept until deleted)")
	dryRun := fs.Bool("dry-run", false, "events: report how many events would change the namespace, writing nothing; requests: count them")
	progress := fs.String("progress", "auto", "progress bar on stderr: auto (when stderr is a terminal), always or never")
	return func(ctx context.Context, _ io.Reader, stdout, stderr io.Writer) error {
		fromPos, toPos, err := parseRange(*from, *to)
		if err != nil {
			return err
		}
		parts, err := parsePartitions(*partitions)
		if err != nil {
			return err
		}
		if *kind == "auto" {
			*kind = "events"
			if strings.Contains(*topic, "request") {
				*kind = "requests"
			}
		}
		if *kind != "events" && *kind != "requests" {
			return fmt.Errorf("-kind: %q is not events, requests or auto", *kind)
		}
		if *kind == "requests" && !*dryRun && (*resultsTopic == "" || *resultsTopic == config.TopicScoreResults) {
			return errors.New("-results-topic: name a topic for the replayed responses, other than the live " + config.TopicScoreResults)
		}
		client, err := conns.Kafka.Client()
		if err != nil {
			return err
		}
		ranges, err := consumers.PlanReplay(ctx, client, *topic, parts, fromPos, toPos)
		if err != nil {
			return err
		}
		shadow := *prefix != *live
		var total int64
		for i, r := range ranges {
			total += r.To - r.From
			ranges[i].Shadow = shadow
		}
		if *kind == "events" && !*dryRun {
			// Say what the replay will write before writing it.
			what := "the live namespace " + *prefix
			if shadow {
				what = "the shadow namespace " + *prefix + fmt.Sprintf(" (its keys expire %s after the replay)", *shadowTTL)
				if *shadowTTL == 0 {
					what = "the shadow namespace " + *prefix + " (kept until deleted: -shadow-ttl 0)"
				}
			}
			fmt.Fprintf(stderr, "replaying %d records of %s in %d partition ranges into %s: each event writes its arm and its user's session; a user not hot is loaded from keyspace %s\n",
				total, *topic, len(ranges), what, conns.CQL.Keyspace)
		}
		bar := newProgressBar(stderr, total, *progress)
		defer bar.stop()

		rdb, hot, err := conns.Redis.Hot(hot.Keys{Prefix: *prefix, Shards: *shards, HalfLife: *halfLife})
		if err != nil {
			return err
		}
		defer rdb.Close()
		if !*dryRun {
			if err := hot.PairHalfLife(ctx); err != nil {
				return err
			}
		}
		if shadow && *kind == "events" && !*dryRun {
			// Also when the replay fails or is interrupted: a shadow's keys
			// never outlive the TTL.
			defer func() {
				used, err := hot.Expire(context.WithoutCancel(ctx), *shadowTTL)
				if err != nil {
					fmt.Fprintf(stderr, "expiring shadow namespace %s: %v\n", *prefix, err)
					return
				}
				fmt.Fprintf(stdout, "shadow namespace %s holds %d keys, %d bytes; they expire in %s\n", *prefix, used.Keys, used.Bytes, *shadowTTL)
			}()
		}
		var st consumers.ReplayStats
		switch {
		case *kind == "requests" && *dryRun:
			fmt.Fprintf(stdout, "would score %d records of %s (offsets in range; bad ones are counted when scored)\n", total, *topic)
			return nil
		case *kind == "requests":
			st, err = replayRequests(ctx, *conns, hot, *topic, *resultsTopic, ranges, bar.add)
		default:
			st, err = replayEvents(ctx, *conns, hot, *topic, store.TierConfig{HistoryCap: *historyCap, UserCounts: *userCounts, DedupWindow: max(*dedupWindow, 1), NoDedup: *dedupWindow == 0}, ranges, *dryRun, bar.add)
		}
		bar.stop()
		if err != nil {
			return err
		}
		if st.Before > 0 {
			fmt.Fprintf(stdout, "started %d offsets before the range: the namespace had not applied them, and a replay leaves no event behind\n", st.Before)
		}
		switch {
		case *kind == "requests":
			fmt.Fprintf(stdout, "scored %d requests of %s into %s; %d bad\n", st.New, *topic, *resultsTopic, st.Bad)
		case *dryRun:
			fmt.Fprintf(stdout, "dry run: %d records of %s in range; %d events would be applied to namespace %s, %d are applied already, %d bad\n",
				st.Records, *topic, st.New, *prefix, st.Known, st.Bad)
		default:
			fmt.Fprintf(stdout, "replayed %d records of %s into namespace %s (keyspace %s): %d events applied, %d applied before (skipped), %d bad\n",
				st.Records, *topic, *prefix, conns.CQL.Keyspace, st.New, st.Known, st.Bad)
		}
		return nil
	}
}

// discard drops dead letters: a replay counts bad records instead.
type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

func replayEvents(ctx context.Context, conns config.Connections, hot *hot.Hot, topic string, tierCfg store.TierConfig,
	ranges []consumers.ReplayRange, dry bool, progress func(int)) (consumers.ReplayStats, error) {
	var total consumers.ReplayStats
	stores := consumers.IngestStores{Arms: hot, Recoverer: hot}
	if !dry {
		session, cold, err := conns.CQL.Cold(ctx, hot.Keys().Prefix, tierCfg.HistoryCap)
		if err != nil {
			return total, err
		}
		defer session.Close()
		if err := hot.Pair(ctx, cold.Keyspace()); err != nil {
			return total, err
		}
		tier, err := store.NewTier(hot, cold, tierCfg)
		if err != nil {
			return total, err
		}
		stores.Users, stores.Recoverer = tier, tier
	}
	transport, err := conns.Kafka.Transport()
	if err != nil {
		return total, err
	}
	in, err := consumers.NewIngest(consumers.IngestConfig{Brokers: conns.Kafka.Brokers, Topic: topic, Transport: transport}, stores, discard{})
	if err != nil {
		return total, err
	}
	for _, r := range ranges {
		st, err := in.Replay(ctx, r, dry, progress)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func replayRequests(ctx context.Context, conns config.Connections, hot *hot.Hot, topic, results string,
	ranges []consumers.ReplayRange, progress func(int)) (consumers.ReplayStats, error) {
	var total consumers.ReplayStats
	transport, err := conns.Kafka.Transport()
	if err != nil {
		return total, err
	}
	// An unreadable limit is taken as Kafka's default, which BatchBytes returns.
	batchBytes, _ := conns.Kafka.BatchBytes(ctx, results)
	out := producers.NewSyncWriter(producers.WriterConfig{Brokers: conns.Kafka.Brokers,
		BatchSize: 512, BatchBytes: batchBytes, BatchTimeout: time.Millisecond, WriteTimeout: conns.Kafka.Timeout, Transport: transport})
	defer out.Close()
	model := consumers.DefaultRewardModel()
	model.Decay.HalfLife = hot.Keys().HalfLife
	sc, err := consumers.NewScorer(consumers.ScorerConfig{Brokers: conns.Kafka.Brokers, Topic: topic, ResultsTopic: results, Replay: true,
		Model: model, Transport: transport}, hot, nil, out)
	if err != nil {
		return total, err
	}
	for _, r := range ranges {
		st, err := sc.Replay(ctx, r, progress)
		total.Add(st)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// parseRange reads -from and -to.
func parseRange(from, to string) (consumers.Position, consumers.Position, error) {
	fromPos, err := parsePosition(from, consumers.Earliest)
	if err != nil {
		return fromPos, fromPos, fmt.Errorf("-from: %w", err)
	}
	toPos, err := parsePosition(to, consumers.End)
	if err != nil {
		return fromPos, toPos, fmt.Errorf("-to: %w", err)
	}
	return fromPos, toPos, nil
}

func parsePosition(s string, def consumers.Position) (consumers.Position, error) {
	switch s {
	case "":
		return def, nil
	case "earliest":
		return consumers.Earliest, nil
	case "end":
		return consumers.End, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return consumers.Position{Offset: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return def, fmt.Errorf("%q is not earliest, end, an offset or an RFC 3339 time", s)
	}
	return consumers.Position{Time: t}, nil
}

func parsePartitions(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-partitions: %q is not a partition number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// progressBar draws "[#####-----]  45%  12,345/27,000  3,456/s  ETA 4s" on
// a terminal, updated five times a second.
type progressBar struct {
	done    atomic.Int64
	total   int64
	w       io.Writer
	start   time.Time
	quit    chan struct{}
	stopped chan struct{}
	on      bool
}

func newProgressBar(w io.Writer, total int64, mode string) *progressBar {
	b := &progressBar{total: total, w: w, start: time.Now(), quit: make(chan struct{}), stopped: make(chan struct{})}
	switch mode {
	case "always":
		b.on = true
	case "auto":
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				b.on = true
			}
		}
	}
	if !b.on {
		close(b.stopped)
		return b
	}
	go func() {
		defer close(b.stopped)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				fmt.Fprintf(b.w, "\r%s\n", b.line())
				return
			case <-t.C:
				fmt.Fprintf(b.w, "\r%s", b.line())
			}
		}
	}()
	return b
}

func (b *progressBar) add(n int) { b.done.Add(int64(n)) }

func (b *progressBar) line() string {
	done := b.done.Load()
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(done)/float64(b.total), 1)
	}
	const width = 30
	filled := int(frac * width)
	elapsed := time.Since(b.start).Seconds()
	rate := float64(done) / max(elapsed, 1e-3)
	eta := "?"
	if rate > 0 {
		eta = (time.Duration(float64(b.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("[%s%s] %3.0f%%  %d/%d  %.0f/s  ETA %s ", strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		100*frac, done, b.total, rate, eta)
}

func (b *progressBar) stop() {
	if b.on {
		select {
		case <-b.quit:
		default:
			close(b.quit)
		}
	}
	<-b.stopped
}
