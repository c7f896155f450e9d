// Command bandit-ingest keeps the pipeline's state from interaction events.
//
// In mode "ingest" it consumes the interactions topic and applies each
// event, exactly once in effect, to the arm counts and to the user's hot
// session (loaded from the cold tier on the user's first event); bad
// records go to the dead-letter topic, and offsets are committed only after
// the state they cover is written. In mode "sweep" it offloads users idle
// longer than -idle-timeout to the cold tier and evicts them. Mode "all"
// (the default) does both. Any number of instances may run in any mode.
//
// Every flag can also be set by its environment variable: -kafka-brokers is
// BANDITSTREAM_KAFKA_BROKERS. SIGINT or SIGTERM drains the batches in flight,
// commits and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/cmd/internal/faults"
	"github.com/banditstream/banditstream/cmd/internal/ops"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
)

type options struct {
	conns         config.Connections
	mode          string
	topic         string
	group         string
	keyPrefix     string
	shards        int
	halfLife      time.Duration
	fetchBytes    int
	fetchWait     time.Duration
	drainTimeout  time.Duration
	session       time.Duration
	historyCap    int
	userCounts    int
	dedupWindow   int
	idleTimeout   time.Duration
	flushAfter    time.Duration
	flushPending  int
	flushChunk    int
	sweepInterval time.Duration
	snapshotEvery time.Duration
	keepSnapshots int
	commitDelay   time.Duration
	coldLatency   time.Duration
	waitReplicas  int
	waitTimeout   time.Duration
	registry      config.SchemaRegistry
	observe       config.Observability
	opsAddr       string
}

func newFlags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("bandit-ingest", flag.ContinueOnError)
	o.conns.Register(fs)
	keys := hot.DefaultKeys()
	in, tier, sweep := consumers.DefaultIngestConfig(), store.DefaultTierConfig(), store.DefaultSweeperConfig()
	fs.StringVar(&o.mode, "mode", "all", "ingest (consume events), sweep (offload idle users) or all")
	fs.StringVar(&o.topic, "topic", in.Topic, "topic of interaction events; bad records go to <topic>"+config.DLQSuffix)
	fs.StringVar(&o.group, "group", in.GroupID, "consumer group id")
	fs.StringVar(&o.keyPrefix, "key-prefix", keys.Prefix, "hot tier key prefix (a separate namespace per prefix)")
	fs.IntVar(&o.shards, "shards", keys.Shards, "arm shards in the hot tier; never change it for a given prefix")
	fs.DurationVar(&o.halfLife, "half-life", 0, "decay half-life of the arm counts by event time (0: none); never change it for a given prefix, and give bandit-score and bandit replay the same")
	fs.IntVar(&o.fetchBytes, "fetch-max-bytes", in.FetchMaxBytes, "largest fetch from one partition, bytes")
	fs.DurationVar(&o.fetchWait, "fetch-max-wait", in.FetchMaxWait, "how long a fetch waits for new records")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", in.DrainTimeout, "time to finish in-flight batches after SIGTERM")
	fs.DurationVar(&o.session, "session-timeout", in.SessionTimeout, "consumer group session timeout (at least Kafka's group.min.session.timeout.ms, 6s by default)")
	fs.IntVar(&o.historyCap, "history-cap", tier.HistoryCap, "recent events kept per hot user")
	fs.IntVar(&o.dedupWindow, "dedup-window", tier.DedupWindow, fmt.Sprintf("latest events per user whose ids are remembered, so that an event at two offsets counts once (%d bytes each; 0: by offset only)", hot.DedupRecordBytes))
	fs.IntVar(&o.userCounts, "user-counts", tier.UserCounts, fmt.Sprintf("own counts kept per user, one per arm and event type (at most %d): past it only the user's existing counts grow", store.MaxUserCounts))
	fs.DurationVar(&o.idleTimeout, "idle-timeout", tier.IdleTimeout, "inactivity after which a user is offloaded to the cold tier")
	fs.DurationVar(&o.flushAfter, "flush-after", tier.FlushAfter, "age of a hot user's oldest event not yet in the cold tier after which the sweeper flushes the user without evicting it")
	fs.IntVar(&o.flushPending, "flush-pending", tier.FlushPending, "events of a hot user not yet in the cold tier that make the next sweep flush it without eviction (0: the age bound alone)")
	fs.IntVar(&o.flushChunk, "flush-chunk", tier.FlushChunk, "pending events read from the hot tier and written to the cold tier at a time by a flush")
	fs.DurationVar(&o.sweepInterval, "sweep-interval", sweep.Interval, "how often the sweeper looks for idle users")
	fs.DurationVar(&o.snapshotEvery, "snapshot-interval", sweep.SnapshotEvery, "how often the sweeper snapshots the arm counts to the cold tier (0: never); recovery replays from the latest snapshot")
	fs.IntVar(&o.keepSnapshots, "keep-snapshots", tier.KeepSnapshots, "complete arm snapshots kept in the cold tier; older ones are deleted after each snapshot")
	fs.IntVar(&o.waitReplicas, "redis-wait-replicas", 0, "replicas of each hot-tier master that must have a batch's writes (Redis WAIT) before its offset is committed, so that a failover to a replica loses nothing committed (0: do not wait)")
	fs.DurationVar(&o.waitTimeout, "redis-wait-timeout", time.Second, "how long a batch waits for -redis-wait-replicas; past it the batch is retried")
	fs.DurationVar(&o.commitDelay, "fault-commit-delay", 0, "fault injection for tests: wait this long between writing a batch and committing it")
	fs.DurationVar(&o.coldLatency, "fault-cold-latency", 0, "fault injection for tests: delay every offload's cold-tier writes")
	o.registry.Register(fs, false)
	o.observe.Register(fs)
	fs.StringVar(&o.opsAddr, "ops-addr", "", "address of /metrics, /healthz and /readyz, e.g. :9100 (empty: not served)")
	return fs
}

func main() {
	config.Main("bandit-ingest", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stderr) })
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	var o options
	fs := newFlags(&o)
	if help, err := config.ParseArgs(fs, args, stderr, o.conns.Validate); help || err != nil {
		return err
	}
	schemaRegistry, err := o.registry.Client()
	if err != nil {
		return fmt.Errorf("-schema-registry: %w", err)
	}
	if o.mode != "ingest" && o.mode != "sweep" && o.mode != "all" {
		return fmt.Errorf("-mode: %q is not ingest, sweep or all", o.mode)
	}
	if o.waitReplicas < 0 || o.waitTimeout <= 0 {
		return fmt.Errorf("-redis-wait-replicas %d, -redis-wait-timeout %s: want at least 0 replicas and a positive timeout", o.waitReplicas, o.waitTimeout)
	}
	d, err := config.OpenDaemon(&o.observe, &o.conns, hot.Keys{Prefix: o.keyPrefix, Shards: o.shards, HalfLife: o.halfLife}, stderr)
	if err != nil {
		return err
	}
	defer d.Close()
	log, rdb, hot, transport, dialer := d.Log, d.Redis, d.Hot, d.Transport, d.Dialer
	session, cold, err := o.conns.CQL.Cold(ctx, o.keyPrefix, o.historyCap)
	if err != nil {
		return err
	}
	defer session.Close()
	if err := hot.Pair(ctx, cold.Keyspace()); err != nil {
		return err
	}
	if err := hot.PairHalfLife(ctx); err != nil {
		return err
	}
	var coldTier store.ColdTier = cold
	if o.coldLatency > 0 {
		coldTier = faults.SlowCold{ColdTier: cold, Delay: o.coldLatency}
	}
	tier, err := store.NewTier(hot, coldTier, store.TierConfig{
		HistoryCap: o.historyCap, IdleTimeout: o.idleTimeout, KeepSnapshots: o.keepSnapshots, Logger: log,
		FlushAfter: o.flushAfter, FlushPending: o.flushPending, FlushChunk: o.flushChunk, UserCounts: o.userCounts,
		DedupWindow: max(o.dedupWindow, 1), NoDedup: o.dedupWindow == 0,
	})
	if err != nil {
		return err
	}

	log.Info("starting", "mode", o.mode, "topic", o.topic, "group", o.group, "config", o.conns.Redacted())
	srv := ops.NewServer([]ops.Check{ops.KafkaCheck(o.conns.Kafka.Brokers, transport), ops.RedisCheck(rdb), ops.CQLCheck(session)}, log)
	if err := ops.Register(srv.Registry,
		ops.Func{Name: "session_loads_total", Help: "Sessions this process loaded from the cold tier.", Type: prometheus.CounterValue,
			Read: func() []ops.Value { return ops.One(tier.Stats().SessionLoads) }},
		ops.Func{Name: "session_offloads_total", Help: "Sessions this process flushed to the cold tier and evicted.", Type: prometheus.CounterValue,
			Read: func() []ops.Value { return ops.One(tier.Stats().Offloads) }},
		ops.Func{Name: "session_flushes_total", Help: "Sessions of active users this process flushed to the cold tier without evicting them.", Type: prometheus.CounterValue,
			Read: func() []ops.Value { return ops.One(tier.Stats().Flushes) }},
		ops.Func{Name: "cold_refusals_total", Help: "Flushes the cold tier refused for good (a grant or the schema missing, a write past its size limit); retried each sweep.", Type: prometheus.CounterValue,
			Read: func() []ops.Value { return ops.One(tier.Stats().ColdRefusals) }},
	); err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	if o.mode == "ingest" || o.mode == "all" {
		batchBytes, err := o.conns.Kafka.BatchBytes(ctx, schemas.DeadLetterTopic(o.topic))
		if err != nil {
			log.Warn("topic limits not read; assuming Kafka's default", "batch_bytes", batchBytes, "err", err)
		}
		dlq := producers.NewSyncWriter(producers.WriterConfig{
			Brokers: o.conns.Kafka.Brokers, Topic: schemas.DeadLetterTopic(o.topic),
			BatchTimeout: 5 * time.Millisecond, BatchBytes: batchBytes, WriteTimeout: o.conns.Kafka.Timeout, Transport: transport,
		})
		defer dlq.Close()
		batchRecords, batchSeconds := ops.BatchHistograms(srv.Registry, "ingest")
		var durable func(context.Context) (string, error)
		if o.waitReplicas > 0 {
			durable = func(ctx context.Context) (string, error) { return hot.WaitReplicas(ctx, o.waitReplicas, o.waitTimeout) }
		}
		in, err := consumers.NewIngest(consumers.IngestConfig{
			BatchRecords:   batchRecords,
			BatchSeconds:   batchSeconds,
			Brokers:        o.conns.Kafka.Brokers,
			Topic:          o.topic,
			GroupID:        o.group,
			FetchMaxBytes:  o.fetchBytes,
			FetchMaxWait:   o.fetchWait,
			DrainTimeout:   o.drainTimeout,
			SessionTimeout: o.session,
			Durable:        durable,
			BeforeCommit:   faults.CommitDelay(o.commitDelay),
			Logger:         log,
			Transport:      transport,
			Dialer:         dialer,
			Registry:       schemaRegistry,
			Tracer:         d.Tracer,
		}, consumers.IngestStores{Arms: hot, Users: tier, Recoverer: tier}, dlq)
		if err != nil {
			return err
		}
		if err := ops.Register(srv.Registry,
			ops.Lag(o.topic, in.Lag),
			ops.Func{Name: "events_total", Help: "Events read, by outcome: applied to the counts, duplicate (at or below the watermarks: redelivered or replayed), dead_letter.",
				Type: prometheus.CounterValue, Labels: []string{"outcome"}, Read: func() []ops.Value {
					st := in.Stats()
					return []ops.Value{{V: float64(st.Applied), Labels: []string{"applied"}}, {V: float64(st.Duplicates), Labels: []string{"duplicate"}},
						{V: float64(st.DeadLetters), Labels: []string{"dead_letter"}}}
				}},
			ops.Func{Name: "hot_tier_full", Help: "1 while the hot tier refuses ingest's writes for want of memory (ingest paused, retrying), else 0.",
				Type: prometheus.GaugeValue, Read: func() []ops.Value { return ops.One(boolValue(in.Stats().HotTierFull)) }},
		); err != nil {
			return err
		}
		srv.AddCheck(ops.Check{Name: "hot-tier-memory", Run: func(context.Context) error {
			if in.Stats().HotTierFull {
				return errors.New("the hot tier is full: ingest is paused until memory frees")
			}
			return nil
		}})
		g.Go(func() error { return in.Run(ctx) })
	}
	if o.mode == "sweep" || o.mode == "all" {
		sweeper, err := store.NewSweeper(tier, store.SweeperConfig{
			Interval: o.sweepInterval, SnapshotEvery: o.snapshotEvery, Limit: store.DefaultSweeperConfig().Limit, Logger: log,
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return sweeper.Run(ctx) })
	}
	// Served once every check is added.
	g.Go(func() error { return srv.Serve(ctx, o.opsAddr) })
	return g.Wait()
}

func boolValue(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
