package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
)

// ArmStore is what ingest needs of the hot tier: watermarks and atomic
// per-shard application of arm deltas (store.Hot implements it).
type ArmStore interface {
	Keys() store.Keys
	Watermarks(ctx context.Context, topic string, partition int) ([]int64, string, error)
	Apply(ctx context.Context, topic string, partition int, last int64, epoch string, shards []store.ShardBatch) (map[int]int64, error)
	Recover(ctx context.Context, seen string) (string, error)
	MarkPartitionApplied(ctx context.Context, topic string, partition int, last int64, epoch string) error
	PartitionApplied(ctx context.Context, topic string, partition int, epoch string) (int64, bool, error)
}

// Recoverer recovers a hot tier that lost its state (store.Tier restores
// the latest snapshot; store.Hot only starts a new epoch).
type Recoverer interface {
	Recover(ctx context.Context, seen string) (string, error)
}

var _ Recoverer = (*store.Tier)(nil)

var _ ArmStore = (*store.Hot)(nil)

// UserStore is what ingest needs of the tiered user state: session loads
// and per-user application of events above the user's watermark
// (store.Tier implements it).
type UserStore interface {
	EnsureLoaded(ctx context.Context, users []string, epoch string) error
	ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]store.UserEvent) (notLoaded []string, err error)
}

var _ UserStore = (*store.Tier)(nil)

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
	// DrainTimeout bounds finishing the in-flight batch after ctx ends;
	// default 20 s.
	DrainTimeout time.Duration
	// SessionTimeout is how long the group waits for a silent member
	// before reassigning its partitions; default 10 s (Kafka's minimum is
	// 6 s).
	SessionTimeout time.Duration
	// FaultCommitDelay waits between writing a batch's state and committing
	// its offset: fault injection, so that tests which kill the process
	// land in that window often. Zero in production.
	FaultCommitDelay time.Duration
	// Transport to the brokers; nil uses kafka-go's default.
	Transport kafka.RoundTripper
	// Dialer for the group coordinator; nil uses kafka-go's default.
	Dialer *kafka.Dialer
	Logger *slog.Logger
	// BatchRecords and BatchSeconds, if set, observe each batch's size and
	// the time from its fetch to its commit.
	BatchRecords, BatchSeconds Observer
}

func (c *IngestConfig) setDefaults() {
	if c.Topic == "" {
		c.Topic = "interactions"
	}
	if c.GroupID == "" {
		c.GroupID = "banditstream-ingest"
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = 4 << 20
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = 250 * time.Millisecond
	}
	if c.Limits == (schemas.Limits{}) {
		c.Limits = schemas.DefaultLimits()
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 20 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
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
	cfg   IngestConfig
	arms  ArmStore
	users UserStore
	dlq   MessageWriter
	fetcher
	log *slog.Logger

	batches, records, applied, duplicates, deadLetters atomic.Int64
}

// IngestStats counts what an ingest worker did since it started.
type IngestStats struct {
	Batches, Records int64
	// Applied events changed the counts; Duplicates were at or below the
	// watermarks (redelivered or replayed) and changed nothing.
	Applied, Duplicates, DeadLetters int64
}

// Stats returns the counts so far.
func (in *Ingest) Stats() IngestStats {
	return IngestStats{Batches: in.batches.Load(), Records: in.records.Load(), Applied: in.applied.Load(),
		Duplicates: in.duplicates.Load(), DeadLetters: in.deadLetters.Load()}
}

// NewIngest returns an ingest worker. dlq must write to cfg.Topic+".dlq".
// users may be nil: then only the arm counts are kept.
func NewIngest(cfg IngestConfig, arms ArmStore, users UserStore, dlq MessageWriter) (*Ingest, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if arms == nil || dlq == nil {
		return nil, errors.New("ingest: nil store or dead-letter writer")
	}
	log := cfg.Logger.With("component", "ingest", "topic", cfg.Topic)
	return &Ingest{
		cfg:   cfg,
		arms:  arms,
		users: users,
		dlq:   dlq,
		log:   log,
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
// ctx is the worker's, gctx the generation's: either ending stops it, but a
// batch already fetched is finished, within DrainTimeout.
func (in *Ingest) runPartition(ctx, gctx context.Context, gen *kafka.Generation, partition int, offset int64) {
	log := in.log.With("partition", partition)
	p := &partitionState{topic: in.cfg.Topic, partition: partition}
	stop := func() bool { return ctx.Err() != nil || gctx.Err() != nil }
	backoff := newBackoff()
	for !stop() {
		if p.watermarks == nil {
			if err := in.startPartition(gctx, p, &offset); err != nil {
				log.Warn("starting partition", "err", err)
				backoff.wait(gctx)
				continue
			}
		}
		batch, next, err := in.fetch(gctx, partition, offset)
		if err != nil {
			if !stop() {
				log.Warn("fetching", "offset", offset, "err", err)
				backoff.wait(gctx)
			}
			continue
		}
		if len(batch) == 0 {
			offset = next
			continue
		}
		started := time.Now()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.DrainTimeout)
		err = in.process(wctx, p, batch)
		if err == nil && in.cfg.FaultCommitDelay > 0 {
			time.Sleep(in.cfg.FaultCommitDelay)
		}
		if err == nil {
			last := batch[len(batch)-1].offset
			err = gen.CommitOffsets(map[string]map[int]int64{in.cfg.Topic: {partition: last + 1}})
			if err != nil {
				// The generation is over; the next owner resumes from the
				// last commit, and the watermarks make the replay harmless.
				cancel()
				log.Info("commit refused; generation ended", "err", err)
				return
			}
			offset = next
			backoff.reset()
			in.cfg.BatchRecords.Observe(float64(len(batch)))
			in.cfg.BatchSeconds.Observe(time.Since(started).Seconds())
		}
		cancel()
		if err != nil {
			// Nothing was committed: fetch the same batch again.
			log.Warn("processing batch", "offset", offset, "err", err)
			p.watermarks = nil
			backoff.wait(gctx)
		}
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
func (in *Ingest) startPartition(ctx context.Context, p *partitionState, offset *int64) error {
	wms, epoch, err := in.arms.Watermarks(ctx, p.topic, p.partition)
	if err != nil {
		return err
	}
	if epoch == "" || (p.epoch != "" && epoch != p.epoch) {
		var rec Recoverer = in.arms
		if r, ok := in.users.(Recoverer); ok {
			rec = r
		}
		if epoch, err = rec.Recover(ctx, p.epoch); err != nil {
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
		first, err := in.earliest(ctx, p.partition)
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
	// partition's applied offset is left alone (a replayed range says
	// nothing of the offsets before it).
	replay bool
	stats  ReplayStats
}

// goodEvent is a validated event reduced to what the state needs.
type goodEvent struct {
	offset int64
	shard  int
	arm    store.Arm
	typ    int
	timeMs int64
	hist   store.HistoryEvent
}

// decodeBatch splits a batch into valid events and dead letters.
func (in *Ingest) decodeBatch(p *partitionState, batch []record) ([]goodEvent, []kafka.Message) {
	keys := in.arms.Keys()
	now := time.Now()
	var good []goodEvent
	var dead []kafka.Message
	for i := range batch {
		r := &batch[i]
		ev, err := in.decode(p, r, now)
		if err != nil {
			dead = append(dead, deadLetter(in.cfg.Topic, p.partition, r, err))
			continue
		}
		a := store.Arm{Context: ev.GetContext(), Item: ev.GetItemId()}
		good = append(good, goodEvent{offset: r.offset, shard: keys.Shard(a), arm: a,
			typ: store.TypeIndex(ev.GetType()), timeMs: ev.GetEventTimeMs(),
			hist: store.HistoryEvent{
				UserID: ev.GetUserId(), EventTimeMs: ev.GetEventTimeMs(), EventID: ev.GetEventId(),
				ItemID: ev.GetItemId(), Context: ev.GetContext(), Type: int32(ev.GetType()),
				SessionID: ev.GetSessionId(), Value: ev.GetValue(),
			}})
	}
	return good, dead
}

// process handles one batch: dead letters first, then the arm counts. It
// returns nil only when both are durable.
func (in *Ingest) process(ctx context.Context, p *partitionState, batch []record) error {
	good, dead := in.decodeBatch(p, batch)
	var st ReplayStats
	st.count(good, len(dead), p.watermarks)
	if !p.replay && len(dead) > 0 {
		if err := in.dlq.WriteMessages(ctx, dead...); err != nil {
			return fmt.Errorf("writing %d dead letters: %w", len(dead), err)
		}
		in.log.Info("dead letters", "partition", p.partition, "count", len(dead))
	}
	if in.users != nil {
		if err := in.applyUsers(ctx, p, good); err != nil {
			return err
		}
	}
	last := batch[len(batch)-1].offset
	markApplied := func() error {
		if !p.replay {
			if err := in.arms.MarkPartitionApplied(ctx, p.topic, p.partition, last, p.epoch); err != nil {
				return err
			}
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
		shards := aggregate(good, p.watermarks)
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
		if !errors.Is(err, store.ErrConflict) || attempt >= 3 {
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

// applyUsers loads the sessions of the batch's users that are not hot,
// then applies each user's events; a user evicted in between is loaded
// again.
func (in *Ingest) applyUsers(ctx context.Context, p *partitionState, good []goodEvent) error {
	byUser := map[string][]store.UserEvent{}
	for _, e := range good {
		byUser[e.hist.UserID] = append(byUser[e.hist.UserID], store.UserEvent{Offset: e.offset, Event: e.hist})
	}
	for attempt := 0; len(byUser) > 0; attempt++ {
		users := make([]string, 0, len(byUser))
		for u := range byUser {
			users = append(users, u)
		}
		if err := in.users.EnsureLoaded(ctx, users, p.epoch); err != nil {
			return fmt.Errorf("loading sessions: %w", err)
		}
		notLoaded, err := in.users.ApplyUserEvents(ctx, p.topic, p.partition, p.epoch, byUser)
		if err != nil {
			return err
		}
		if len(notLoaded) == 0 {
			return nil
		}
		if attempt >= 5 {
			return fmt.Errorf("%d users evicted again and again while applying", len(notLoaded))
		}
		again := make(map[string][]store.UserEvent, len(notLoaded))
		for _, u := range notLoaded {
			again[u] = byUser[u]
		}
		byUser = again
	}
	return nil
}

func (in *Ingest) decode(p *partitionState, r *record, now time.Time) (*schemas.Interaction, error) {
	codec, err := schemas.CodecFor(headerValue(r.headers, schemas.HeaderContentType))
	if err != nil {
		return nil, err
	}
	if err := codec.DecodeInteraction(in.cfg.Limits, r.value, &p.event); err != nil {
		return nil, err
	}
	if err := in.cfg.Limits.CheckInteraction(&p.event, now); err != nil {
		return nil, err
	}
	return &p.event, nil
}

// aggregate sums the events above each shard's watermark, per shard and arm.
func aggregate(events []goodEvent, watermarks []int64) []store.ShardBatch {
	byShard := map[int]map[store.Arm]*store.Counts{}
	for _, e := range events {
		if e.offset <= watermarks[e.shard] {
			continue // applied before: a redelivery or a replay
		}
		arms := byShard[e.shard]
		if arms == nil {
			arms = map[store.Arm]*store.Counts{}
			byShard[e.shard] = arms
		}
		c := arms[e.arm]
		if c == nil {
			c = &store.Counts{}
			arms[e.arm] = c
		}
		c.ByType[e.typ]++
		c.LastEventMs = max(c.LastEventMs, e.timeMs)
	}
	out := make([]store.ShardBatch, 0, len(byShard))
	for s, arms := range byShard {
		sb := store.ShardBatch{Shard: s, Expected: watermarks[s], Deltas: make([]store.ArmDelta, 0, len(arms))}
		for a, c := range arms {
			sb.Deltas = append(sb.Deltas, store.ArmDelta{Arm: a, Counts: *c})
		}
		out = append(out, sb)
	}
	return out
}

// Dead-letter headers, added to the record's own.
const (
	HeaderError           = "dlq-error"
	HeaderErrorField      = "dlq-error-field"
	HeaderOriginTopic     = "dlq-origin-topic"
	HeaderOriginPartition = "dlq-origin-partition"
	HeaderOriginOffset    = "dlq-origin-offset"
	// HeaderTruncated holds the original size of a value cut to
	// DeadLetterMaxValueBytes, so an oversize record cannot block its
	// partition by being too large for the dead-letter topic as well.
	HeaderTruncated = "dlq-value-truncated"
)

// DeadLetterSuffix is appended to a topic's name to name its dead-letter
// topic.
const DeadLetterSuffix = ".dlq"

// DeadLetterMaxValueBytes bounds the value of a dead letter.
const DeadLetterMaxValueBytes = 256 << 10

func deadLetter(topic string, partition int, r *record, cause error) kafka.Message {
	field := ""
	var fe *schemas.FieldError
	if errors.As(cause, &fe) {
		field = fe.Field
	}
	headers := append([]kafka.Header{}, r.headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(cause.Error())},
		kafka.Header{Key: HeaderErrorField, Value: []byte(field)},
		kafka.Header{Key: HeaderOriginTopic, Value: []byte(topic)},
		kafka.Header{Key: HeaderOriginPartition, Value: []byte(strconv.Itoa(partition))},
		kafka.Header{Key: HeaderOriginOffset, Value: []byte(strconv.FormatInt(r.offset, 10))},
	)
	value := r.value
	if len(value) > DeadLetterMaxValueBytes {
		headers = append(headers, kafka.Header{Key: HeaderTruncated, Value: []byte(strconv.Itoa(len(value)))})
		value = value[:DeadLetterMaxValueBytes]
	}
	return kafka.Message{Key: r.key, Value: value, Headers: headers}
}

func headerValue(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// backoff waits between retries of a failing dependency: 100 ms doubling
// to 5 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

func (b *backoff) wait(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	b.d = min(2*b.d, 5*time.Second)
}
