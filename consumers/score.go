package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/banditstream/banditstream/consumers/internal/armcache"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// ArmReader reads arm counts from the hot tier.
type ArmReader interface {
	Counts(ctx context.Context, arms []state.Arm) ([]state.Counts, error)
}

// SessionStore is what the scorer needs of the tiered user state: the
// users' own counts while their session is hot, and session loads
// (the tiering).
type SessionStore interface {
	Epoch(ctx context.Context) (string, error)
	EnsureLoaded(ctx context.Context, users []string, epoch string) error
	Sessions(ctx context.Context, users []string) ([]state.SessionStats, error)
}

// ScorerConfig configures Scorer. Zero fields take the documented defaults.
type ScorerConfig struct {
	Brokers []string
	// Topic of score requests; default "score-requests". Bad requests go
	// to Topic+".dlq".
	Topic string
	// ResultsTopic receives responses to requests without a reply topic;
	// default "score-results".
	ResultsTopic string
	// GroupID of the consumer group; default "banditstream-scorer".
	GroupID string
	// FetchMaxBytes bounds one fetch from one partition, and so the
	// requests scored together; default 1 MiB.
	FetchMaxBytes int
	// FetchMaxWait is how long a fetch waits for requests; default 100 ms.
	FetchMaxWait time.Duration
	// Limits checks every request; default schemas.DefaultLimits().
	Limits schemas.Limits
	// Tracer, if set, records a span per batch linked to the trace
	// context of each request that carries a sampled one (see
	// HeaderTraceparent); nil records nothing, at no cost.
	Tracer trace.Tracer
	// Registry, if set, checks the schema id of every framed request, and
	// frames the protobuf responses and decisions with the ids of the
	// schemas it holds for their topics (registering the .proto where it
	// holds none). A response or decision in JSON is written unframed.
	Registry SchemaRegistry
	// Model turns counts into posteriors; default DefaultRewardModel().
	Model RewardModel
	// ModelVersion labels responses; default Model.Version(). With
	// Priors, each response's label also names the prior of its context
	// (";prior=context:beta(α0,β0)" or ";prior=global").
	ModelVersion string
	// Priors, if set, give each context's arms their own prior in place of
	// Model.Prior (see ContextPriors).
	Priors PriorSource
	// DecisionsTopic, if set, receives a schemas.Decision for every request
	// ranked (keyed by user id, protobuf), once its response is
	// acknowledged and before the batch is committed: the candidates and
	// their posteriors, the ranking with its propensities (computed for
	// every request then), the seed, the model version and the time, for
	// offline policy evaluation. A request answered twice logs its decision
	// twice, the same; readers count a request id once. A decision its topic
	// refuses for good (too large, not allowed) is dropped and counted,
	// never holding the partition. Never set for a replay.
	DecisionsTopic string
	// PropensityDraws is the number of Monte Carlo rankings behind the
	// propensities of a request that asks for them (see
	// sampler.Ranker.Propensities): their standard error is at most
	// 1/(2·√draws), their cost draws × candidates Beta draws. Default 1000.
	PropensityDraws int
	// CacheBytes bounds the in-process arm cache; default 256 MiB. Zero
	// after defaults (set -1) disables it.
	CacheBytes int64
	// CacheMaxAge is the freshness of cached arms: one used when older is
	// read again from the hot tier in the background (pipelined, every
	// CacheMaxAge/4), while requests go on using it. Default 1 s.
	CacheMaxAge time.Duration
	// CacheMaxStale is the age past which a cached arm is read again before
	// it is used (the background refresh fell behind, or the hot tier is
	// unreachable). Default 10 × CacheMaxAge.
	CacheMaxStale time.Duration
	// SessionWait bounds waiting for the session load a request from a user
	// who is not hot starts; the request is scored without the user's own
	// counts if the load takes longer (it goes on in the background).
	// Default 50 ms.
	SessionWait time.Duration
	// SessionLoads bounds the batches of session loads in flight; a batch
	// that finds them all busy scores without starting more. Default 8.
	SessionLoads int
	// DrainTimeout bounds finishing the in-flight batch after ctx ends;
	// default 20 s.
	DrainTimeout time.Duration
	// SessionTimeout of the consumer group; default 10 s.
	SessionTimeout time.Duration
	// ReplyTopicWait is how long responses to a reply topic the brokers do
	// not know are retried before their requests go to the dead-letter
	// topic: a client's new reply topic is seen after the writer's next
	// metadata refresh. It holds back the partition meanwhile. Default 10 s.
	ReplyTopicWait time.Duration
	// ReplyTopicPrefixes are where a request may have its response sent:
	// a reply topic must start with one of them (or be ResultsTopic), and
	// is never the request topic, a dead-letter topic, the interactions
	// topic or an internal topic (__…), whatever the prefixes. A request
	// naming another goes to the dead-letter topic at once. Default
	// ["score-replies."], where producers.RankClient makes its topics;
	// empty (not nil): no reply topics.
	ReplyTopicPrefixes []string
	// CommitInterval is how often the offset of the answered batches is
	// committed (at the latest; also when the partition runs dry and on
	// shutdown). A crash answers at most that much again, with the same
	// request ids. Default 200 ms.
	CommitInterval time.Duration
	// Replay answers every request on ResultsTopic, whatever its reply
	// topic and deadline, and counts bad requests instead of sending them
	// to the dead-letter topic: for Scorer.Replay into a topic of the
	// operator's choice (offline evaluation), which never touches live
	// results.
	Replay bool
	// BeforeCommit, if set, runs before every commit: a hook for tests
	// that kill the process between publishing and committing. It must
	// return when ctx ends.
	BeforeCommit func(ctx context.Context) error
	Transport    kafka.RoundTripper
	Dialer       *kafka.Dialer
	Logger       *slog.Logger
	// BatchRecords and BatchSeconds, if set, observe each batch's size and
	// the time from its fetch to the acknowledgement of its responses;
	// RequestSeconds each request's time from its sent_time_ms to its
	// ranking; PublishSeconds each batch's publish, from the first write
	// of its responses to their acknowledgement.
	BatchRecords, BatchSeconds, RequestSeconds, PublishSeconds Observer
}

// DefaultScorerConfig returns the defaults: requests from "score-requests",
// responses to "score-results", group "banditstream-scorer", 1 MiB fetches
// waiting up to 100 ms, a 256 MiB arm cache refreshed past 1 s and read
// again past 10 s, 50 ms of waiting for a session load and 8 loads at a
// time, 20 s to drain, a 10 s group session, commits every 200 ms, 10 s
// for a reply topic to appear, and the default reward model.
func DefaultScorerConfig() ScorerConfig {
	m := DefaultRewardModel()
	return ScorerConfig{
		Topic: schemas.TopicScoreRequests, ResultsTopic: schemas.TopicScoreResults, GroupID: "banditstream-scorer",
		FetchMaxBytes: 1 << 20, FetchMaxWait: 100 * time.Millisecond,
		Limits: schemas.DefaultLimits(), Model: m, ModelVersion: m.Version(),
		CacheBytes: 256 << 20, CacheMaxAge: time.Second, CacheMaxStale: 10 * time.Second,
		SessionWait: 50 * time.Millisecond, SessionLoads: 8,
		DrainTimeout: 20 * time.Second, SessionTimeout: 10 * time.Second,
		CommitInterval: 200 * time.Millisecond, ReplyTopicWait: 10 * time.Second,
		ReplyTopicPrefixes: []string{ReplyTopicPrefix}, PropensityDraws: 1000,
	}
}

func (c *ScorerConfig) setDefaults() {
	// Two defaults follow what the caller set: the maximum staleness is ten
	// times the maximum age, and the version names the model.
	if c.CacheMaxStale == 0 && c.CacheMaxAge != 0 {
		c.CacheMaxStale = 10 * c.CacheMaxAge
	}
	if c.ModelVersion == "" && c.Model != (RewardModel{}) {
		c.ModelVersion = c.Model.Version()
	}
	fillDefaults(c, DefaultScorerConfig())
	c.BatchRecords, c.BatchSeconds, c.RequestSeconds = orNone(c.BatchRecords), orNone(c.BatchSeconds), orNone(c.RequestSeconds)
	c.PublishSeconds = orNone(c.PublishSeconds)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ReplyTopicPrefix is the default prefix of reply topics.
const ReplyTopicPrefix = "score-replies."

// checkReplyTopic reports why a request may not have its response sent
// to topic.
func (c *ScorerConfig) checkReplyTopic(topic string) error {
	switch {
	case topic == c.ResultsTopic:
		return nil
	case topic == c.Topic || topic == schemas.TopicInteractions || strings.HasSuffix(topic, schemas.DeadLetterSuffix) || strings.HasPrefix(topic, "__") ||
		(c.DecisionsTopic != "" && topic == c.DecisionsTopic):
		return &schemas.FieldError{Field: "reply_topic", Reason: fmt.Sprintf("%q is one of the pipeline's own or an internal topic", topic)}
	}
	for _, p := range c.ReplyTopicPrefixes {
		if strings.HasPrefix(topic, p) {
			return nil
		}
	}
	return &schemas.FieldError{Field: "reply_topic", Reason: fmt.Sprintf("%q does not start with an allowed prefix %q", topic, c.ReplyTopicPrefixes)}
}

// Validate reports a configuration that cannot work.
func (c ScorerConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("scorer: no brokers")
	}
	if c.FetchMaxBytes < 1024 || c.FetchMaxWait < 0 || c.DrainTimeout < 0 || c.CacheMaxAge < 0 || c.CacheMaxStale < c.CacheMaxAge || c.SessionWait < 0 || c.CommitInterval < 0 || c.ReplyTopicWait < 0 {
		return errors.New("scorer: fetch max bytes must be at least 1 KiB, durations not negative, cache max stale at least cache max age")
	}
	if c.SessionLoads < 1 {
		return errors.New("scorer: session loads must be at least 1")
	}
	if c.Replay && c.DecisionsTopic != "" {
		return errors.New("scorer: a replay logs no decisions")
	}
	if c.PropensityDraws < 1 || c.PropensityDraws > 1_000_000 {
		return fmt.Errorf("scorer: propensity draws %d must be between 1 and 1,000,000", c.PropensityDraws)
	}
	if err := c.Model.Validate(); err != nil {
		return fmt.Errorf("scorer: %w", err)
	}
	return c.Limits.Validate()
}

// ScorerStats counts what a scorer did since it started.
type ScorerStats struct {
	Scored, PastDeadline, DeadLetters int64
	Candidates                        int64
	// CacheHits were found in the in-process cache; CacheMisses were read
	// from the hot tier, where HotArms had counts and PriorArms none (they
	// get the prior).
	CacheHits, CacheMisses     int64
	HotArms, PriorArms         int64
	CacheStale, CacheEvictions int64
	// Decisions were written to DecisionsTopic; DecisionsDropped refused
	// by it for good.
	Decisions, DecisionsDropped int64
	CacheRefreshed              int64
	CacheArms, CacheContexts    int
	CacheBytes                  int64
	SessionLoads                int64
}

// Scorer answers score requests: per partition it fetches a batch of
// requests, sends bad ones to the dead-letter topic, skips those past their
// deadline, looks up every candidate's posterior (in-process cache, then
// the hot tier, then the prior), adds the user's own counts when the
// user's session is hot and starts the session when not, ranks with
// Thompson sampling or by posterior mean, publishes each response keyed by
// request id, and commits only once every response is acknowledged.
type Scorer struct {
	cfg      ScorerConfig
	arms     ArmReader
	sessions SessionStore
	out      MessageWriter
	fetcher
	cache *armcache.Cache
	log   *slog.Logger

	loads   chan struct{} // semaphore of session-load batches in flight
	loading sync.WaitGroup

	scored, pastDeadline, deadLetters, candidates, sessionLoads atomic.Int64
	hotArms, priorArms                                          atomic.Int64
	decisions, decisionsDropped                                 atomic.Int64
}

// NewScorer returns a scorer. out writes the results and the dead letters;
// every message names its topic, so out must have no topic of its own (a
// *kafka.Writer with Topic empty, RequiredAcks = RequireAll and Async =
// false). sessions may be nil: then the users' own counts are not used.
func NewScorer(cfg ScorerConfig, arms ArmReader, sessions SessionStore, out MessageWriter) (*Scorer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if arms == nil || out == nil {
		return nil, errors.New("scorer: nil arm reader or writer")
	}
	log := cfg.Logger.With("component", "scorer", "topic", cfg.Topic)
	return &Scorer{
		cfg:      cfg,
		arms:     arms,
		sessions: sessions,
		out:      out,
		fetcher: fetcher{
			client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: cfg.Transport},
			topic:  cfg.Topic, maxBytes: cfg.FetchMaxBytes, maxWait: cfg.FetchMaxWait, log: log,
		},
		cache: armcache.New(cfg.CacheBytes, cfg.CacheMaxAge, cfg.CacheMaxStale),
		log:   log,
		loads: make(chan struct{}, cfg.SessionLoads),
	}, nil
}

// Stats returns the counts so far.
func (s *Scorer) Stats() ScorerStats {
	c := s.cache.Stats()
	return ScorerStats{
		CacheArms: c.Arms, CacheContexts: c.Contexts, CacheBytes: c.Bytes,
		Scored: s.scored.Load(), PastDeadline: s.pastDeadline.Load(), DeadLetters: s.deadLetters.Load(),
		Candidates: s.candidates.Load(),
		CacheHits:  c.Hits, CacheMisses: c.Misses,
		CacheStale: c.Stale, CacheEvictions: c.Evictions,
		CacheRefreshed: c.Refreshed,
		HotArms:        s.hotArms.Load(), PriorArms: s.priorArms.Load(),
		SessionLoads: s.sessionLoads.Load(),
		Decisions:    s.decisions.Load(), DecisionsDropped: s.decisionsDropped.Load(),
	}
}

// Run consumes until ctx ends, then finishes the batches in flight,
// commits, waits for the session loads and the cache refresh it started
// and leaves the group.
func (s *Scorer) Run(ctx context.Context) error {
	defer s.loading.Wait()
	var refresher sync.WaitGroup
	rctx, stopRefresh := context.WithCancel(ctx)
	refresher.Add(1)
	go func() {
		defer refresher.Done()
		s.refreshCache(rctx)
	}()
	defer refresher.Wait()
	defer stopRefresh()
	return runGroup(ctx, groupConfig{
		brokers: s.cfg.Brokers, groupID: s.cfg.GroupID, topic: s.cfg.Topic,
		sessionTimeout: s.cfg.SessionTimeout, dialer: s.cfg.Dialer, log: s.log,
		lost: func(p int) { s.lag.Delete(p) },
	}, s.runPartition)
}

// Replay scores the requests of r (Config.Replay must be set) and
// publishes the responses to ResultsTopic; nothing is committed.
func (s *Scorer) Replay(ctx context.Context, r ReplayRange, progress func(int)) (ReplayStats, error) {
	if !s.cfg.Replay {
		return ReplayStats{}, errors.New("scorer: replay needs a scorer configured with Replay")
	}
	w := newScoreWorker(s, r.Partition)
	before := s.Stats()
	err := s.replayLoop(r, w, progress, s.log).replay(ctx, r.From)
	after := s.Stats()
	w.stats.New = int(after.Scored - before.Scored)
	return w.stats, err
}

// refreshBatch bounds the arms read again in one pipeline.
const refreshBatch = 4096

// refreshCache reads again, every CacheMaxAge/4, the cached arms used
// while older than CacheMaxAge, until ctx ends.
func (s *Scorer) refreshCache(ctx context.Context) {
	tick := time.NewTicker(max(s.cfg.CacheMaxAge/4, 10*time.Millisecond))
	defer tick.Stop()
	var todo []armcache.Entry
	arms := make([]state.Arm, 0, refreshBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// todo keeps its whole capacity from tick to tick: chunks are
		// taken by index, not by moving its start.
		todo = s.cache.RefreshList(todo[:0], 1<<20)
		for start := 0; start < len(todo) && ctx.Err() == nil; start += refreshBatch {
			chunk := todo[start:min(len(todo), start+refreshBatch)]
			arms = arms[:0]
			for _, e := range chunk {
				arms = append(arms, state.Arm{Context: e.Context, Item: e.Item})
			}
			fetched := time.Now().UnixNano()
			counts, err := s.arms.Counts(ctx, arms)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("refreshing cached arms", "arms", len(arms), "err", err)
				}
				break // the marks stay: tried again next tick
			}
			for i := range chunk {
				chunk[i].Arm = s.cfg.Model.arm(&counts[i], fetched/1e6)
			}
			s.cache.Refresh(chunk, fetched)
		}
	}
}

func (s *Scorer) runPartition(ctx, gctx context.Context, gen *kafka.Generation, partition int, offset int64) {
	l := &loop{
		src: &s.fetcher, h: newScoreWorker(s, partition), topic: s.cfg.Topic, partition: partition,
		gen: gen, commitInterval: s.cfg.CommitInterval, drainTimeout: s.cfg.DrainTimeout, beforeCommit: s.cfg.BeforeCommit,
		batchRecords: s.cfg.BatchRecords, batchSeconds: s.cfg.BatchSeconds, log: s.log,
	}
	l.consume(ctx, gctx, offset)
}
