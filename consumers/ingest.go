package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// ArmStore is what ingest needs of the hot tier: the shard of an arm,
// watermarks and atomic per-shard application of arm deltas.
type ArmStore interface {
	Shard(a state.Arm) int
	// Decay is the namespace's decay: the deltas carry decayed counts
	// with it.
	Decay() sampler.Decay
	Watermarks(ctx context.Context, topic string, partition int) ([]int64, string, error)
	Apply(ctx context.Context, topic string, partition int, last int64, epoch string, shards []state.ShardBatch) (map[int]int64, error)
	MarkPartitionApplied(ctx context.Context, topic string, partition int, last int64, epoch string) error
	PartitionApplied(ctx context.Context, topic string, partition int, epoch string) (int64, bool, error)
}

// Recoverer recovers a hot tier that lost its state and returns the new
// epoch: the tiering restores the latest snapshot first; the hot tier alone
// only starts a new epoch.
type Recoverer interface {
	Recover(ctx context.Context, seen string) (string, error)
}

// UserStore is what ingest needs of the tiered user state: session loads
// and per-user application of events above the user's watermark, each
// event id once within the user's deduplication window. dups are the
// offsets decided duplicates (now, or by an earlier delivery of the same
// offsets): ingest counts them nowhere.
type UserStore interface {
	EnsureLoaded(ctx context.Context, users []string, epoch string) error
	ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]state.UserEvent) (notLoaded []string, dups []int64, err error)
}

// IngestStores are the stores ingest writes to.
type IngestStores struct {
	Arms ArmStore
	// Users, if set, get every event applied to the user's session; nil
	// keeps the arm counts only.
	Users UserStore
	// Recoverer recovers the hot tier when it lost its state; it must be
	// set (the tiering, or the hot tier itself without users).
	Recoverer Recoverer
}

// MessageWriter writes Kafka messages synchronously (a *kafka.Writer with
// RequiredAcks = RequireAll and Async = false).
type MessageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

var _ MessageWriter = (*kafka.Writer)(nil)

// IngestConfig configures Ingest. Zero fields take the documented defaults.
type IngestConfig struct {
	Brokers []string
	// Topic to read; default "interactions". Bad records go to Topic+".dlq".
	Topic string
	// GroupID of the consumer group; default "banditstream-ingest".
	GroupID string
	// FetchMaxBytes bounds one fetch from one partition; default 4 MiB.
	FetchMaxBytes int
	// FetchMaxWait is how long a fetch waits for data; default 250 ms.
	FetchMaxWait time.Duration
	// Limits checks every event; default schemas.DefaultLimits().
	Limits schemas.Limits
	// Registry, if set, checks the schema id of every framed event.
	Registry SchemaRegistry
	// Tracer, if set, records a span per batch linked to the trace
	// context of each event that carries a sampled one; nil records
	// nothing, at no cost.
	Tracer trace.Tracer
	// DrainTimeout bounds finishing the in-flight batch after ctx ends;
	// default 20 s.
	DrainTimeout time.Duration
	// SessionTimeout is how long the group waits for a silent member
	// before reassigning its partitions; default 10 s (Kafka's minimum is
	// 6 s).
	SessionTimeout time.Duration
	// Durable, if set, runs after a batch's writes, before the batch
	// counts as done and its offset may be committed: the hot tier's
	// WaitReplicas, so that only writes that survive a failover are
	// committed. It returns the hot tier's masters: when they differ from
	// the previous batch's, a failover happened while the batch was
	// written, and the batch fails too. A failed batch is retried from the
	// watermarks the hot tier holds then.
	Durable func(ctx context.Context) (masters string, err error)
	// BeforeCommit, if set, runs between writing a batch's state and
	// committing its offset: a hook for tests that kill the process in
	// that window. It must return when ctx ends.
	BeforeCommit func(ctx context.Context) error
	// Transport to the brokers; nil uses kafka-go's default.
	Transport kafka.RoundTripper
	// Dialer for the group coordinator; nil uses kafka-go's default.
	Dialer *kafka.Dialer
	Logger *slog.Logger
	// BatchRecords and BatchSeconds, if set, observe each batch's size and
	// the time from its fetch to its commit.
	BatchRecords, BatchSeconds Observer
}

// DefaultIngestConfig returns the defaults: topic "interactions", group
// "banditstream-ingest", 4 MiB fetches waiting up to 250 ms, 20 s to drain,
// a 10 s group session.
func DefaultIngestConfig() IngestConfig {
	return IngestConfig{
		Topic: schemas.TopicInteractions, GroupID: "banditstream-ingest",
		FetchMaxBytes: 4 << 20, FetchMaxWait: 250 * time.Millisecond,
		Limits:       schemas.DefaultLimits(),
		DrainTimeout: 20 * time.Second, SessionTimeout: 10 * time.Second,
	}
}

func (c *IngestConfig) setDefaults() {
	fillDefaults(c, DefaultIngestConfig())
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.BatchRecords, c.BatchSeconds = orNone(c.BatchRecords), orNone(c.BatchSeconds)
}

// Validate reports a configuration that cannot work.
func (c IngestConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("ingest: no brokers")
	}
	if c.FetchMaxBytes < 1024 || c.FetchMaxWait < 0 || c.DrainTimeout < 0 {
		return errors.New("ingest: fetch max bytes must be at least 1 KiB and durations not negative")
	}
	return c.Limits.Validate()
}

// Ingest consumes interaction events and applies them to the arm counts,
// exactly once in effect: per partition it fetches a batch, decodes and
// validates it, sends bad records to the dead-letter topic, applies the
// good ones to the hot tier together with the partition's offset
// watermark, and only then commits the offset.
type Ingest struct {
	cfg     IngestConfig
	arms    ArmStore
	users   UserStore
	recover Recoverer
	dlq     MessageWriter
	fetcher
	log *slog.Logger

	batches, records, applied, duplicates, deadLetters atomic.Int64
	// hotFull is set while batches fail on a full hot tier.
	hotFull atomic.Bool
}

// IngestStats counts what an ingest worker did since it started.
type IngestStats struct {
	Batches, Records int64
	// Applied events changed the counts; Duplicates were at or below the
	// watermarks (redelivered or replayed) and changed nothing.
	Applied, Duplicates, DeadLetters int64
	// HotTierFull is true while the last batch was refused by a full hot
	// tier: ingest is paused, retrying, until memory frees.
	HotTierFull bool
}

// Stats returns the counts so far.
func (in *Ingest) Stats() IngestStats {
	return IngestStats{Batches: in.batches.Load(), Records: in.records.Load(), Applied: in.applied.Load(),
		Duplicates: in.duplicates.Load(), DeadLetters: in.deadLetters.Load(), HotTierFull: in.hotFull.Load()}
}

// NewIngest returns an ingest worker. dlq must write to the dead-letter
// topic of cfg.Topic (schemas.DeadLetterTopic).
func NewIngest(cfg IngestConfig, stores IngestStores, dlq MessageWriter) (*Ingest, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if stores.Arms == nil || stores.Recoverer == nil || dlq == nil {
		return nil, errors.New("ingest: nil arm store, recoverer or dead-letter writer")
	}
	log := cfg.Logger.With("component", "ingest", "topic", cfg.Topic)
	return &Ingest{
		cfg:     cfg,
		arms:    stores.Arms,
		users:   stores.Users,
		recover: stores.Recoverer,
		dlq:     dlq,
		log:     log,
		fetcher: fetcher{
			client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: cfg.Transport},
			topic:  cfg.Topic, maxBytes: cfg.FetchMaxBytes, maxWait: cfg.FetchMaxWait, log: log,
		},
	}, nil
}

// Run consumes until ctx ends, then finishes the batches in flight, commits
// and leaves the group.
func (in *Ingest) Run(ctx context.Context) error {
	return runGroup(ctx, groupConfig{
		brokers: in.cfg.Brokers, groupID: in.cfg.GroupID, topic: in.cfg.Topic,
		sessionTimeout: in.cfg.SessionTimeout, dialer: in.cfg.Dialer, log: in.log,
		lost: func(p int) { in.lag.Delete(p) },
	}, in.runPartition)
}

// runPartition consumes one partition for the lifetime of a generation.
func (in *Ingest) runPartition(ctx, gctx context.Context, gen *kafka.Generation, partition int, offset int64) {
	p := &partitionState{topic: in.cfg.Topic, partition: partition}
	l := &loop{
		src: &in.fetcher, h: &ingestPartition{in: in, p: p, src: &in.fetcher}, topic: in.cfg.Topic, partition: partition,
		gen: gen, drainTimeout: in.cfg.DrainTimeout, beforeCommit: in.cfg.BeforeCommit,
		batchRecords: in.cfg.BatchRecords, batchSeconds: in.cfg.BatchSeconds, log: in.log,
	}
	l.consume(ctx, gctx, offset)
}

// ingestPartition is the batch handler of one partition's loop: consumed
// (start decides the resume offset) or replayed (from the range's start;
// with dry, nothing is written).
type ingestPartition struct {
	in  *Ingest
	p   *partitionState
	src source // where the earliest offset is asked
	dry bool
}

func (h *ingestPartition) start(ctx context.Context, offset int64) (int64, error) {
	if h.p.replay {
		return h.in.startReplay(ctx, h.p, h.dry, offset, h.src)
	}
	err := h.in.startPartition(ctx, h.p, &offset, h.src)
	return offset, err
}

func (h *ingestPartition) handle(ctx, _ context.Context, batch []record) error {
	if h.dry {
		good, dead, err := h.in.decodeBatch(ctx, h.p, batch)
		if err != nil {
			return err
		}
		h.p.stats.count(good, len(dead), h.p.watermarks)
		return nil
	}
	span := startBatchSpan(ctx, h.in.cfg.Tracer, SpanIngestBatch, h.in.cfg.Topic, h.p.partition, batch)
	// process counts into p.stats once the batch is applied.
	err := h.in.process(ctx, h.p, batch)
	if errors.Is(err, state.ErrRefused) {
		err = h.in.isolate(ctx, h.p, batch)
	}
	if err == nil && h.in.cfg.Durable != nil && !h.p.replay {
		err = h.durable(ctx)
	}
	h.in.noteHotTier(err)
	endBatchSpan(span, err)
	return err
}

// durable waits for the batch's writes to be durable (cfg.Durable) and
// fails the batch when the hot tier's masters changed since the previous
// batch: a replica promoted meanwhile may lack the writes it acknowledged.
func (h *ingestPartition) durable(ctx context.Context) error {
	masters, err := h.in.cfg.Durable(ctx)
	if err != nil {
		return err
	}
	before := h.p.masters
	h.p.masters = masters
	if before != "" && masters != before {
		return fmt.Errorf("the hot tier's masters changed while the batch was written (%s, were %s): redone from its watermarks", masters, before)
	}
	return nil
}

// isolate processes a batch a store refused record by record, and sends
// each record refused again to the dead-letter topic with the reason: a
// record whose state no retry can write (a key of another kind where the
// user's session should be) must not stop its partition. Every step is
// idempotent, so the records the failed batch applied before are not
// counted again. An error of another kind fails the batch, to be retried.
func (in *Ingest) isolate(ctx context.Context, p *partitionState, batch []record) error {
	refused := 0
	for i := range batch {
		err := in.process(ctx, p, batch[i:i+1])
		if !errors.Is(err, state.ErrRefused) {
			if err != nil {
				return err
			}
			continue
		}
		dead := deadLetter(p.topic, p.partition, &batch[i], fmt.Errorf("the stores refused it: %w", err))
		if err := writeDeadLetters(ctx, in.dlq, []kafka.Message{dead}); err != nil {
			return fmt.Errorf("writing a dead letter: %w", err)
		}
		refused++
		in.deadLetters.Add(1)
	}
	in.log.Warn("records the stores refused sent to the dead-letter topic", "partition", p.partition, "count", refused)
	return nil
}

// noteHotTier records whether the hot tier refused a batch for want of
// memory, and says so once when it starts and once when it ends: the batch
// is retried, so nothing is lost, and the partition waits for memory.
func (in *Ingest) noteHotTier(err error) {
	full := errors.Is(err, state.ErrHotFull)
	if in.hotFull.Swap(full) == full {
		return
	}
	if full {
		in.log.Error("hot tier full: ingest paused, retrying until memory frees", "err", err)
	} else {
		in.log.Info("hot tier writable again: ingest resumed")
	}
}

// startPartition reads the partition's watermarks and decides where to
// fetch from. When the hot tier has lost its state (or is new), it recovers
// it first. Then, in every case, it starts no later than right after the
// last offset applied to every shard in the current epoch, and from the
// earliest record if nothing was applied in this epoch or the group has no
// commit (a new group replays everything, harmlessly): so a worker that
// starts after someone else recovered the hot tier still replays what the
// loss took, and the surviving watermarks (shards', and users' in the cold
// tier) make the replay count only what was lost.
func (in *Ingest) startPartition(ctx context.Context, p *partitionState, offset *int64, src source) error {
	wms, epoch, err := in.arms.Watermarks(ctx, p.topic, p.partition)
	if err != nil {
		return err
	}
	if epoch == "" || (p.epoch != "" && epoch != p.epoch) {
		if epoch, err = in.recover.Recover(ctx, p.epoch); err != nil {
			return err
		}
		if wms, _, err = in.arms.Watermarks(ctx, p.topic, p.partition); err != nil {
			return err
		}
	}
	applied, ok, err := in.arms.PartitionApplied(ctx, p.topic, p.partition, epoch)
	if err != nil {
		return err
	}
	from := *offset // -1: no commit (a new group, or one reset): from the earliest
	switch {
	case !ok:
		from = -1 // nothing applied in this epoch: from the earliest record
	case from >= 0 && applied+1 < from:
		from = applied + 1
	}
	if from != *offset && *offset >= 0 {
		in.log.Warn("replaying the partition: the hot tier lost state since the last commit",
			"partition", p.partition, "committed", *offset, "replay_from", from)
	}
	*offset = from
	if *offset < 0 {
		// Ingest never skips data: start at the earliest record.
		first, err := src.earliest(ctx, p.partition)
		if err != nil {
			return err
		}
		*offset = first
	}
	p.watermarks, p.epoch = wms, epoch
	return nil
}

// partitionState is owned by one partition worker.
type partitionState struct {
	topic      string
	partition  int
	watermarks []int64 // per shard; nil until read
	epoch      string  // the hot tier's recovery epoch the watermarks belong to
	event      schemas.Interaction
	// replay: bad records are counted, not dead-lettered again, and the
	// partition's applied offset only ever grows (a replay behind ingest
	// leaves it). A replay starts where nothing is left unapplied before
	// it (startReplay): shadow says a namespace with nothing applied may
	// start where the replay does. applied is the last offset the replay
	// knows applied.
	replay, shadow bool
	applied        int64
	stats          ReplayStats
	// masters are the hot tier's masters the last batch's writes were
	// made durable on (Durable).
	masters string
}

// goodEvent is a validated event reduced to what the state needs.
type goodEvent struct {
	offset int64
	shard  int
	arm    state.Arm
	typ    int
	timeMs int64
	hist   state.HistoryEvent
}

// decodeBatch splits a batch into valid events and dead letters; it fails
// when the schema registry cannot say whether a framed event's schema is
// accepted.
func (in *Ingest) decodeBatch(ctx context.Context, p *partitionState, batch []record) ([]goodEvent, []kafka.Message, error) {
	now := time.Now()
	var good []goodEvent
	var dead []kafka.Message
	for i := range batch {
		r := &batch[i]
		ev, err := in.decode(ctx, p, r, now)
		if err != nil {
			if !errors.Is(err, schemas.ErrInvalid) {
				return nil, nil, fmt.Errorf("schema registry: %w", err)
			}
			dead = append(dead, deadLetter(in.cfg.Topic, p.partition, r, err))
			continue
		}
		a := state.Arm{Context: ev.GetContext(), Item: ev.GetItemId()}
		good = append(good, goodEvent{offset: r.offset, shard: in.arms.Shard(a), arm: a,
			typ: state.TypeIndex(ev.GetType()), timeMs: ev.GetEventTimeMs(),
			hist: state.HistoryEvent{
				UserID: ev.GetUserId(), EventTimeMs: ev.GetEventTimeMs(), EventID: ev.GetEventId(),
				ItemID: ev.GetItemId(), Context: ev.GetContext(), Type: int32(ev.GetType()),
				SessionID: ev.GetSessionId(), Value: ev.GetValue(),
			}})
	}
	return good, dead, nil
}

// process handles one batch: the users' events and the arm counts, then
// the dead letters. It returns nil only when all are durable. The dead
// letters come last: every step before them is idempotent (the
// watermarks), so a batch retried after a failure of the hot tier (full,
// away) or of the dead-letter write itself writes its dead letters once.
func (in *Ingest) process(ctx context.Context, p *partitionState, batch []record) error {
	good, dead, err := in.decodeBatch(ctx, p, batch)
	if err != nil {
		return err
	}
	valid := len(good)
	if in.users != nil {
		dups, err := in.applyUsers(ctx, p, good)
		if err != nil {
			return err
		}
		good = dropDuplicates(good, dups)
	}
	var st ReplayStats
	st.count(good, len(dead), p.watermarks)
	st.Records += valid - len(good) // duplicates by event id: known
	st.Known += valid - len(good)
	last := batch[len(batch)-1].offset
	markApplied := func() error {
		if !p.replay || last > p.applied {
			if err := in.arms.MarkPartitionApplied(ctx, p.topic, p.partition, last, p.epoch); err != nil {
				return err
			}
			p.applied = last
		}
		if !p.replay && len(dead) > 0 {
			if err := writeDeadLetters(ctx, in.dlq, dead); err != nil {
				return fmt.Errorf("writing %d dead letters: %w", len(dead), err)
			}
			in.log.Info("dead letters", "partition", p.partition, "count", len(dead))
		}
		p.stats.Add(st)
		in.batches.Add(1)
		in.records.Add(int64(st.Records))
		in.applied.Add(int64(st.New))
		in.duplicates.Add(int64(st.Known))
		in.deadLetters.Add(int64(st.Bad))
		return nil
	}
	for attempt := 0; ; attempt++ {
		shards := aggregate(good, p.watermarks, in.arms.Decay())
		if len(shards) == 0 {
			return markApplied()
		}
		current, err := in.arms.Apply(ctx, p.topic, p.partition, last, p.epoch, shards)
		if err == nil {
			for _, sb := range shards {
				p.watermarks[sb.Shard] = last
			}
			return markApplied()
		}
		if !errors.Is(err, state.ErrConflict) || attempt >= 3 {
			return err
		}
		// Another writer got there first: the shards it did apply are
		// filtered out on the next pass.
		for _, sb := range shards {
			if c, ok := current[sb.Shard]; ok {
				p.watermarks[sb.Shard] = c
			} else {
				p.watermarks[sb.Shard] = last
			}
		}
	}
}

// dropDuplicates returns the events of good whose offsets are not in dups
// (good is reused).
func dropDuplicates(good []goodEvent, dups []int64) []goodEvent {
	if len(dups) == 0 {
		return good
	}
	dup := make(map[int64]bool, len(dups))
	for _, o := range dups {
		dup[o] = true
	}
	out := good[:0]
	for _, e := range good {
		if !dup[e.offset] {
			out = append(out, e)
		}
	}
	return out
}

// applyUsers loads the sessions of the batch's users that are not hot,
// then applies each user's events; a user evicted in between is loaded
// again. It returns the offsets decided duplicates by their event ids.
func (in *Ingest) applyUsers(ctx context.Context, p *partitionState, good []goodEvent) ([]int64, error) {
	byUser := map[string][]state.UserEvent{}
	for _, e := range good {
		byUser[e.hist.UserID] = append(byUser[e.hist.UserID], state.UserEvent{Offset: e.offset, Event: e.hist})
	}
	var all []int64
	for attempt := 0; len(byUser) > 0; attempt++ {
		users := make([]string, 0, len(byUser))
		for u := range byUser {
			users = append(users, u)
		}
		if err := in.users.EnsureLoaded(ctx, users, p.epoch); err != nil {
			return nil, fmt.Errorf("loading sessions: %w", err)
		}
		notLoaded, dups, err := in.users.ApplyUserEvents(ctx, p.topic, p.partition, p.epoch, byUser)
		if err != nil {
			return nil, err
		}
		all = append(all, dups...)
		if len(notLoaded) == 0 {
			return all, nil
		}
		if attempt >= 5 {
			return nil, fmt.Errorf("%d users evicted again and again while applying", len(notLoaded))
		}
		again := make(map[string][]state.UserEvent, len(notLoaded))
		for _, u := range notLoaded {
			again[u] = byUser[u]
		}
		byUser = again
	}
	return all, nil
}

func (in *Ingest) decode(ctx context.Context, p *partitionState, r *record, now time.Time) (*schemas.Interaction, error) {
	codec, data, err := payload(ctx, in.cfg.Limits, in.cfg.Registry, in.cfg.Topic, interactionType, r)
	if err != nil {
		return nil, err
	}
	if err := codec.DecodeInteraction(in.cfg.Limits, data, &p.event); err != nil {
		return nil, err
	}
	if err := in.cfg.Limits.CheckInteraction(&p.event, now); err != nil {
		return nil, err
	}
	return &p.event, nil
}

// aggregate sums the events above each shard's watermark, per shard and arm.
func aggregate(events []goodEvent, watermarks []int64, d sampler.Decay) []state.ShardBatch {
	byShard := map[int]map[state.Arm]*state.Counts{}
	for _, e := range events {
		if e.offset <= watermarks[e.shard] {
			continue // applied before: a redelivery or a replay
		}
		arms := byShard[e.shard]
		if arms == nil {
			arms = map[state.Arm]*state.Counts{}
			byShard[e.shard] = arms
		}
		c := arms[e.arm]
		if c == nil {
			c = &state.Counts{}
			arms[e.arm] = c
		}
		c.Observe(e.typ, e.timeMs, d)
	}
	out := make([]state.ShardBatch, 0, len(byShard))
	for s, arms := range byShard {
		sb := state.ShardBatch{Shard: s, Expected: watermarks[s], Deltas: make([]state.ArmDelta, 0, len(arms))}
		for a, c := range arms {
			sb.Deltas = append(sb.Deltas, state.ArmDelta{Arm: a, Counts: *c})
		}
		out = append(out, sb)
	}
	return out
}
