// Command bandit-score answers score requests.
//
// It consumes the score-requests topic in a consumer group; per partition it
// scores batches of requests: each candidate's Beta posterior comes from an
// in-process cache, else the hot tier, else the prior; the user's own counts
// are added while their session is hot, and a request from a user who is not
// hot starts the session (waiting at most -session-wait). It ranks by
// Thompson sampling (or posterior mean), publishes each response keyed by
// request id to the request's reply topic or -results-topic, and commits a
// batch only once every response is acknowledged. Bad requests go to
// <topic>.dlq; requests past their deadline are counted and skipped.
//
// Every flag can also be set by its environment variable: -kafka-brokers is
// BANDITSTREAM_KAFKA_BROKERS. SIGINT or SIGTERM drains the batches in flight,
// commits and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/cmd/internal/faults"
	"github.com/banditstream/banditstream/cmd/internal/ops"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

type options struct {
	conns         config.Connections
	topic         string
	resultsTopic  string
	group         string
	keyPrefix     string
	shards        int
	halfLife      time.Duration
	fetchBytes    int
	fetchWait     time.Duration
	drainTimeout  time.Duration
	session       time.Duration
	cacheBytes    int64
	cacheMaxAge   time.Duration
	cacheMaxStale time.Duration
	sessions      bool
	sessionWait   time.Duration
	sessionLoads  int
	historyCap    int
	priorAlpha    float64
	priorBeta     float64
	priorMode     string
	priorFit      sampler.PriorFit
	priorEvery    time.Duration
	weights       string
	lambda        float64
	modelVersion  string
	maxCandidates int
	maxK          int
	propDraws     int
	decisions     string
	commitDelay   time.Duration
	commitEvery   time.Duration
	replyWait     time.Duration
	replyPrefixes string
	registry      config.SchemaRegistry
	observe       config.Observability
	opsAddr       string
}

func newFlags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("bandit-score", flag.ContinueOnError)
	o.conns.Register(fs)
	keys := hot.DefaultKeys()
	d := consumers.DefaultScorerConfig()
	lim := d.Limits
	fs.StringVar(&o.topic, "topic", d.Topic, "topic of score requests; bad requests go to <topic>"+config.DLQSuffix)
	fs.StringVar(&o.resultsTopic, "results-topic", d.ResultsTopic, "topic of responses to requests without a reply topic")
	fs.StringVar(&o.group, "group", d.GroupID, "consumer group id")
	fs.StringVar(&o.keyPrefix, "key-prefix", keys.Prefix, "hot tier key prefix (the same as bandit-ingest's)")
	fs.IntVar(&o.shards, "shards", keys.Shards, "arm shards in the hot tier (the same as bandit-ingest's)")
	fs.DurationVar(&o.halfLife, "half-life", 0, "decay half-life of the arm counts by event time (the same as bandit-ingest's; 0: none): posteriors are the decayed counts at the time a request is received")
	fs.IntVar(&o.fetchBytes, "fetch-max-bytes", d.FetchMaxBytes, "largest fetch from one partition, bytes: bounds the requests scored together")
	fs.DurationVar(&o.fetchWait, "fetch-max-wait", d.FetchMaxWait, "how long a fetch waits for new requests")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", d.DrainTimeout, "time to finish in-flight batches after SIGTERM")
	fs.DurationVar(&o.session, "session-timeout", d.SessionTimeout, "consumer group session timeout")
	fs.Int64Var(&o.cacheBytes, "cache-bytes", d.CacheBytes, "bound of the in-process arm cache, bytes (-1: no cache)")
	fs.DurationVar(&o.cacheMaxAge, "cache-max-age", d.CacheMaxAge, "freshness of cached arms: one used when older is read again in the background")
	fs.DurationVar(&o.cacheMaxStale, "cache-max-stale", 0, "age past which a cached arm is read again before use (default 10 × -cache-max-age)")
	fs.BoolVar(&o.sessions, "sessions", true, "add hot users' own counts and start sessions of users who are not hot (needs the cold tier)")
	fs.DurationVar(&o.sessionWait, "session-wait", d.SessionWait, "longest wait for a session load before scoring without the user's own counts")
	fs.IntVar(&o.sessionLoads, "session-loads", d.SessionLoads, "batches of session loads in flight at most")
	fs.IntVar(&o.historyCap, "history-cap", store.DefaultTierConfig().HistoryCap, "recent events loaded per session (the same as bandit-ingest's)")
	fs.Float64Var(&o.priorAlpha, "prior-alpha", d.Model.Prior.Alpha, "Beta prior α0 of every arm")
	fs.Float64Var(&o.priorBeta, "prior-beta", d.Model.Prior.Beta, "Beta prior β0 of every arm")
	pf, pc := sampler.DefaultPriorFit(), consumers.DefaultContextPriorsConfig()
	fs.StringVar(&o.priorMode, "prior", "global", "prior of the arms: global (-prior-alpha, -prior-beta for all) or context (an empirical-Bayes prior per context, fitted to its arms' rates; contexts that cannot be fitted keep the global one)")
	fs.DurationVar(&o.priorEvery, "prior-refresh", pc.Every, "with -prior context: how often the priors are fitted again (by one scorer of the namespace)")
	fs.Float64Var(&o.priorFit.MaxStrength, "prior-max-strength", pf.MaxStrength, "with -prior context: the largest α0 + β0 of a fitted prior (the impressions after which an item's own evidence outweighs it)")
	fs.Float64Var(&o.priorFit.MinTrials, "prior-min-trials", pf.MinTrials, "with -prior context: impressions an arm needs to take part in its context's fit")
	fs.IntVar(&o.priorFit.MinArms, "prior-min-arms", pf.MinArms, "with -prior context: arms a context needs to be fitted")
	fs.StringVar(&o.weights, "reward-weights", "click=1", "reward weight per event type, comma separated type=weight (click, wishlist, add_to_cart, order); types not listed weigh 0")
	fs.Float64Var(&o.lambda, "lambda", d.Model.Lambda, "weight of a hot user's own counts added to the global ones (0: none)")
	fs.StringVar(&o.modelVersion, "model-version", "", "label of the model in every response (default: the prior, weights, lambda and half-life)")
	fs.IntVar(&o.maxCandidates, "max-candidates", lim.MaxCandidates, "largest candidate list accepted")
	fs.IntVar(&o.maxK, "max-k", lim.MaxK, "largest k accepted")
	fs.StringVar(&o.decisions, "decisions-topic", "", "topic receiving a decision per request ranked (candidates, posteriors, ranking, propensities, seed, model), for bandit evaluate (empty: none); every request's propensities are then computed")
	fs.IntVar(&o.propDraws, "propensity-draws", d.PropensityDraws, "Monte Carlo rankings behind the propensities of a request that asks for them (standard error at most 1/(2·√draws), never below 1/draws; cost: draws × candidates Beta draws)")
	fs.DurationVar(&o.commitEvery, "commit-interval", d.CommitInterval, "how often the offset of answered requests is committed; a crash answers at most this much again")
	fs.DurationVar(&o.replyWait, "reply-topic-wait", d.ReplyTopicWait, "how long responses to an unknown reply topic are retried before the request goes to the dead-letter topic")
	fs.StringVar(&o.replyPrefixes, "reply-topic-prefixes", strings.Join(d.ReplyTopicPrefixes, ","), "prefixes a request's reply topic must start with, comma separated (empty: only the results topic); never the pipeline's own or internal topics")
	fs.DurationVar(&o.commitDelay, "fault-commit-delay", 0, "fault injection for tests: wait this long before every commit")
	o.registry.Register(fs, true)
	o.observe.Register(fs)
	fs.StringVar(&o.opsAddr, "ops-addr", "", "address of /metrics, /healthz and /readyz, e.g. :9101 (empty: not served)")
	return fs
}

func main() {
	config.Main("bandit-score", func(ctx context.Context) error { return run(ctx, os.Args[1:], os.Stderr) })
}

// parseWeights reads "click=1,order=5".
func parseWeights(s string) ([state.NumEventTypes]float64, error) {
	var w [state.NumEventTypes]float64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		t, known := schemas.ParseEventType(strings.TrimSpace(name))
		if !ok || !known || t == schemas.Impression {
			return w, fmt.Errorf("-reward-weights: %q is not type=weight with type click, wishlist, add_to_cart or order", part)
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return w, fmt.Errorf("-reward-weights: %q: %w", part, err)
		}
		w[state.TypeIndex(t)] = x
	}
	return w, nil
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
	weights, err := parseWeights(o.weights)
	if err != nil {
		return err
	}
	model := consumers.RewardModel{Prior: sampler.Prior{Alpha: o.priorAlpha, Beta: o.priorBeta}, Weights: weights, Lambda: o.lambda,
		Decay: sampler.Decay{HalfLife: o.halfLife}}
	if err := model.Validate(); err != nil {
		return err
	}
	if o.priorMode != "global" && o.priorMode != "context" {
		return fmt.Errorf("-prior: %q is not global or context", o.priorMode)
	}
	limits := schemas.DefaultLimits()
	limits.MaxCandidates, limits.MaxK = o.maxCandidates, o.maxK
	if err := limits.Validate(); err != nil {
		return fmt.Errorf("-max-candidates, -max-k: %w", err)
	}
	d, err := config.OpenDaemon(&o.observe, &o.conns, hot.Keys{Prefix: o.keyPrefix, Shards: o.shards, HalfLife: o.halfLife}, stderr)
	if err != nil {
		return err
	}
	defer d.Close()
	log, rdb, hot, transport, dialer := d.Log, d.Redis, d.Hot, d.Transport, d.Dialer
	// Clients create their reply topics just before asking: the writer
	// refreshes topic metadata every second rather than kafka-go's 6 s.
	writerTransport, err := o.conns.Kafka.Transport()
	if err != nil {
		return err
	}
	writerTransport.MetadataTTL = time.Second
	checks := []ops.Check{ops.KafkaCheck(o.conns.Kafka.Brokers, transport), ops.RedisCheck(rdb)}
	var sessions consumers.SessionStore
	var tierStats func() store.TierStats
	var keyspace string
	if o.sessions {
		session, cold, err := o.conns.CQL.Cold(ctx, o.keyPrefix, o.historyCap)
		if err != nil {
			return err
		}
		defer session.Close()
		keyspace = cold.Keyspace()
		tier, err := store.NewTier(hot, cold, store.TierConfig{HistoryCap: o.historyCap, Logger: log})
		if err != nil {
			return err
		}
		sessions = tier
		tierStats = tier.Stats
		checks = append(checks, ops.CQLCheck(session))
	}
	var priors *consumers.ContextPriors
	if o.priorMode == "context" {
		if priors, err = consumers.NewContextPriors(consumers.ContextPriorsConfig{Model: model, Fit: o.priorFit, Every: o.priorEvery, Logger: log}, hot); err != nil {
			return fmt.Errorf("-prior context: %w", err)
		}
	}
	srv := ops.NewServer(checks, log)
	batchRecords, batchSeconds := ops.BatchHistograms(srv.Registry, "score")
	requestSeconds := ops.Histogram(srv.Registry, "request_seconds", "Time from a request's sent_time_ms to its ranking.", ops.SecondsBuckets, nil)
	publishSeconds := ops.Histogram(srv.Registry, "publish_seconds", "Time from a batch's first write of its responses to their acknowledgement.", ops.SecondsBuckets, nil)
	limited := []string{o.resultsTopic, schemas.DeadLetterTopic(o.topic)}
	if o.decisions != "" {
		limited = append(limited, o.decisions)
	}
	batchBytes, err := o.conns.Kafka.BatchBytes(ctx, limited...)
	if err != nil {
		log.Warn("topic limits not read; assuming Kafka's default", "batch_bytes", batchBytes, "err", err)
	}
	out := producers.NewSyncWriter(producers.WriterConfig{
		Brokers: o.conns.Kafka.Brokers,
		// kafka-go allocates BatchSize messages for every partition's batch
		// (make([]Message, 0, BatchSize)): 10,000 made 1.5 MB, zeroed and
		// scanned by the GC, per partition per published batch. A batch's
		// responses per partition are in the tens; more go out as several
		// batches.
		BatchSize: 512,
		// Batches that fit the topics' limit: a broker refuses a whole
		// partition's batch past it.
		BatchBytes:   batchBytes,
		BatchTimeout: time.Millisecond,
		WriteTimeout: o.conns.Kafka.Timeout,
		Transport:    writerTransport,
	})
	defer out.Close()
	sc, err := consumers.NewScorer(consumers.ScorerConfig{
		Brokers:         o.conns.Kafka.Brokers,
		Topic:           o.topic,
		ResultsTopic:    o.resultsTopic,
		GroupID:         o.group,
		FetchMaxBytes:   o.fetchBytes,
		FetchMaxWait:    o.fetchWait,
		Limits:          limits,
		Registry:        schemaRegistry,
		Tracer:          d.Tracer,
		Model:           model,
		ModelVersion:    o.modelVersion,
		Priors:          priorSource(priors),
		PropensityDraws: o.propDraws,
		DecisionsTopic:  o.decisions,
		CacheBytes:      o.cacheBytes,
		CacheMaxAge:     o.cacheMaxAge,
		CacheMaxStale:   o.cacheMaxStale,
		SessionWait:     o.sessionWait,
		SessionLoads:    o.sessionLoads,
		DrainTimeout:    o.drainTimeout,
		SessionTimeout:  o.session,
		CommitInterval:  o.commitEvery,
		ReplyTopicWait:  o.replyWait, ReplyTopicPrefixes: append([]string{}, config.SplitList(o.replyPrefixes)...),
		BeforeCommit:   faults.CommitDelay(o.commitDelay),
		Logger:         log,
		BatchRecords:   batchRecords,
		BatchSeconds:   batchSeconds,
		RequestSeconds: requestSeconds,
		PublishSeconds: publishSeconds,
		Transport:      transport,
		Dialer:         dialer,
	}, hot, sessions, out)
	if err != nil {
		return err
	}
	if err := registerScorerMetrics(srv, o.topic, sc, tierStats); err != nil {
		return err
	}
	if priors != nil {
		if err := ops.Register(srv.Registry,
			ops.Func{Name: "context_priors", Help: "Contexts ranked with a fitted prior of their own (-prior context).", Type: prometheus.GaugeValue,
				Read: func() []ops.Value { return ops.One(int64(priors.Contexts())) }},
			ops.Func{Name: "context_priors_fitted_timestamp_seconds", Help: "When the per-context priors in use were fitted (0: not yet).", Type: prometheus.GaugeValue,
				Read: func() []ops.Value { return ops.One(priors.FittedMs() / 1000) }},
		); err != nil {
			return err
		}
	}
	log.Info("starting", "topic", o.topic, "results_topic", o.resultsTopic, "group", o.group,
		"model", model.Version(), "sessions", o.sessions, "config", o.conns.Redacted())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, o.opsAddr) })
	g.Go(func() error {
		// Served meanwhile: /readyz tells why the hot tier is not reached.
		if err := d.Pair(ctx, keyspace); err != nil || ctx.Err() != nil {
			return err
		}
		if priors != nil {
			g.Go(func() error { return priors.Run(ctx) })
		}
		return sc.Run(ctx)
	})
	err = g.Wait()
	st := sc.Stats()
	log.Info("stopped", "scored", st.Scored, "past_deadline", st.PastDeadline, "dead_letters", st.DeadLetters,
		"candidates", st.Candidates, "cache_hits", st.CacheHits, "cache_misses", st.CacheMisses,
		"cache_refreshed", st.CacheRefreshed, "session_loads", st.SessionLoads)
	return err
}

// priorSource is p, or no source (the global prior) when p is nil.
func priorSource(p *consumers.ContextPriors) consumers.PriorSource {
	if p == nil {
		return nil
	}
	return p
}

// registerScorerMetrics exports the scorer's counts, read at each scrape.
func registerScorerMetrics(srv *ops.Server, topic string, sc *consumers.Scorer, tierStats func() store.TierStats) error {
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	fns := []ops.Func{
		ops.Lag(topic, sc.Lag),
		{Name: "requests_total", Help: "Score requests read, by outcome: scored, past_deadline (skipped), dead_letter.", Type: counter,
			Labels: []string{"outcome"}, Read: func() []ops.Value {
				st := sc.Stats()
				return []ops.Value{{V: float64(st.Scored), Labels: []string{"scored"}}, {V: float64(st.PastDeadline), Labels: []string{"past_deadline"}},
					{V: float64(st.DeadLetters), Labels: []string{"dead_letter"}}}
			}},
		{Name: "candidates_total", Help: "Candidates sampled and ranked: the sampler's throughput.", Type: counter,
			Read: func() []ops.Value { return ops.One(sc.Stats().Candidates) }},
		{Name: "arm_lookups_total", Help: "Candidate posteriors by where they came from: cache (in process), hot (read from the hot tier), prior (never counted).",
			Type: counter, Labels: []string{"tier"}, Read: func() []ops.Value {
				st := sc.Stats()
				return []ops.Value{{V: float64(st.CacheHits), Labels: []string{"cache"}}, {V: float64(st.HotArms), Labels: []string{"hot"}},
					{V: float64(st.PriorArms), Labels: []string{"prior"}}}
			}},
		{Name: "decisions_total", Help: "Decisions logged to -decisions-topic, by outcome: written, dropped (refused by the topic for good).", Type: counter,
			Labels: []string{"outcome"}, Read: func() []ops.Value {
				st := sc.Stats()
				return []ops.Value{{V: float64(st.Decisions), Labels: []string{"written"}}, {V: float64(st.DecisionsDropped), Labels: []string{"dropped"}}}
			}},
		{Name: "arm_cache_refreshes_total", Help: "Cached arms read again in the background.", Type: counter,
			Read: func() []ops.Value { return ops.One(sc.Stats().CacheRefreshed) }},
		{Name: "arm_cache_arms", Help: "Arms in the in-process cache.", Type: gauge,
			Read: func() []ops.Value { return ops.One(int64(sc.Stats().CacheArms)) }},
		{Name: "arm_cache_contexts", Help: "Contexts with arms in the in-process cache (a context is kept only while it has arms).", Type: gauge,
			Read: func() []ops.Value { return ops.One(int64(sc.Stats().CacheContexts)) }},
		{Name: "arm_cache_bytes", Help: "Accounted bytes of the in-process cache.", Type: gauge,
			Read: func() []ops.Value { return ops.One(sc.Stats().CacheBytes) }},
	}
	if tierStats != nil {
		fns = append(fns, ops.Func{Name: "session_loads_total", Help: "Sessions this process loaded from the cold tier.", Type: counter,
			Read: func() []ops.Value { return ops.One(tierStats().SessionLoads) }})
	}
	return ops.Register(srv.Registry, fns...)
}
