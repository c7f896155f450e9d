package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// Position is one end of a replay range in every partition: the first
// record at or after Time (Kafka's record timestamp) when Time is set,
// else Offset, where FirstOffset (-2) is the earliest record and
// LastOffset (-1) the end.
type Position struct {
	Offset int64
	Time   time.Time
}

// Earliest and End are the positions of the whole log.
var (
	Earliest = Position{Offset: kafka.FirstOffset}
	End      = Position{Offset: kafka.LastOffset}
)

// ReplayRange is the part of one partition a replay reads: offsets
// [From, To), and of those only records stamped in [FromTime, ToTime) when
// the times are set (requests only: an events replay applies every record
// of the offsets the times resolved to, as skipping one would leave it
// under the watermarks).
type ReplayRange struct {
	Partition        int
	From, To         int64
	FromTime, ToTime time.Time
	// Shadow says the target is a shadow namespace: one with nothing
	// applied in its epoch starts at From. Any other replay of events
	// starts no later than right after what the namespace applied (from
	// the earliest record when nothing), so that it never moves a
	// watermark over an event nobody applied.
	Shadow bool
}

// ReplayStats counts what a replay read.
type ReplayStats struct {
	Records int // read in the range (in time, if a time range was given)
	// New are the valid events above the target's watermarks: those a
	// replay applies (or, dry, would apply).
	New int
	// Known are valid events at or below the watermarks: applied before,
	// skipped.
	Known int
	// Bad records are counted, not dead-lettered again.
	Bad int
	// Before are the offsets replayed before the range's start, which the
	// namespace had not applied (a replay never leaves them behind).
	Before int64
}

// Add adds the counts of o to s (the stats of several ranges).
func (s *ReplayStats) Add(o ReplayStats) {
	s.Records += o.Records
	s.New += o.New
	s.Known += o.Known
	s.Bad += o.Bad
	s.Before += o.Before
}

func (s *ReplayStats) count(good []goodEvent, bad int, watermarks []int64) {
	s.Records += len(good) + bad
	s.Bad += bad
	for _, e := range good {
		if e.offset > watermarks[e.shard] {
			s.New++
		} else {
			s.Known++
		}
	}
}

// PlanReplay resolves from and to into offset ranges of topic's partitions
// (all when partitions is empty). With times, a record belongs to the range
// when its timestamp is in [from.Time, to.Time); that selects exactly when
// timestamps grow with offsets, as with one producer per partition or
// LogAppendTime topics.
func PlanReplay(ctx context.Context, client *kafka.Client, topic string, partitions []int, from, to Position) ([]ReplayRange, error) {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("reading metadata of %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, fmt.Errorf("topic %s not found", topic)
	}
	known := map[int]bool{}
	for _, p := range meta.Topics[0].Partitions {
		known[p.ID] = true
	}
	if len(partitions) == 0 {
		for _, p := range meta.Topics[0].Partitions {
			partitions = append(partitions, p.ID)
		}
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range partitions {
		if !known[p] {
			return nil, fmt.Errorf("topic %s has no partition %d", topic, p)
		}
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	bounds, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	first, last := map[int]int64{}, map[int]int64{}
	for _, po := range bounds.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("listing offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
		first[po.Partition], last[po.Partition] = po.FirstOffset, po.LastOffset
	}
	resolve := func(pos Position) (map[int]int64, error) {
		out := map[int]int64{}
		if pos.Time.IsZero() {
			for _, p := range partitions {
				switch {
				case pos.Offset == kafka.FirstOffset:
					out[p] = first[p]
				case pos.Offset == kafka.LastOffset:
					out[p] = last[p]
				case pos.Offset < 0:
					return nil, fmt.Errorf("offset %d is not an offset, earliest or end", pos.Offset)
				default:
					out[p] = min(max(pos.Offset, first[p]), last[p])
				}
			}
			return out, nil
		}
		req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
		for _, p := range partitions {
			req.Topics[topic] = append(req.Topics[topic], kafka.TimeOffsetOf(p, pos.Time))
		}
		resp, err := client.ListOffsets(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("finding offsets of %s at %s: %w", topic, pos.Time, err)
		}
		for _, po := range resp.Topics[topic] {
			if po.Error != nil {
				return nil, fmt.Errorf("finding offsets of %s/%d at %s: %w", topic, po.Partition, pos.Time, po.Error)
			}
			out[po.Partition] = last[po.Partition] // no record at or after the time
			for off := range po.Offsets {
				if off >= 0 { // the broker answers -1 when no record is that recent
					out[po.Partition] = off
				}
			}
		}
		return out, nil
	}
	starts, err := resolve(from)
	if err != nil {
		return nil, err
	}
	ends, err := resolve(to)
	if err != nil {
		return nil, err
	}
	var out []ReplayRange
	for _, p := range partitions {
		out = append(out, ReplayRange{Partition: p, From: starts[p], To: max(ends[p], starts[p]), FromTime: from.Time, ToTime: to.Time})
	}
	return out, nil
}

// replayLoop returns the loop that replays r through h.
func (f *fetcher) replayLoop(r ReplayRange, h batchHandler, progress func(int), log *slog.Logger) *loop {
	return &loop{src: f, h: h, topic: f.topic, partition: r.Partition, end: r.To,
		fromTime: r.FromTime, toTime: r.ToTime, progress: progress, log: log}
}

// Replay applies the records of r to the stores exactly as consumption
// does: events at or below the stores' watermarks change nothing, so
// replaying a range twice, or a range ingest already consumed, is
// harmless, and a replay into a fresh namespace (another key prefix and
// keyspace) rebuilds it. Bad records are counted, not dead-lettered again.
// Nothing is committed. With dry, nothing is written either: the stats
// say what would change. progress, if not nil, gets the offsets passed.
//
// A replay may run at any time, ahead of ingest or behind it: it starts no
// later than right after the partition's last offset the namespace applied
// (see ReplayRange.Shadow), and marks what it applied as ingest does, so
// the watermarks only ever cover applied events.
func (in *Ingest) Replay(ctx context.Context, r ReplayRange, dry bool, progress func(int)) (ReplayStats, error) {
	p := &partitionState{topic: in.cfg.Topic, partition: r.Partition, replay: true, shadow: r.Shadow}
	r.FromTime, r.ToTime = time.Time{}, time.Time{}
	err := in.replayLoop(r, &ingestPartition{in: in, p: p, dry: dry, src: &in.fetcher}, progress, in.log).replay(ctx, r.From)
	return p.stats, err
}

// startReplay reads the watermarks a replay filters by, and returns where
// it starts: from, or earlier when the namespace has not applied the
// offsets before from. A new namespace, or one that lost its state, is
// recovered first as consumption would (restoring its latest snapshot, if
// any), unless dry.
func (in *Ingest) startReplay(ctx context.Context, p *partitionState, dry bool, from int64, src source) (int64, error) {
	wms, epoch, err := in.arms.Watermarks(ctx, p.topic, p.partition)
	if err != nil {
		return 0, err
	}
	if epoch == "" && !dry {
		if epoch, err = in.recover.Recover(ctx, ""); err != nil {
			return 0, err
		}
		if wms, _, err = in.arms.Watermarks(ctx, p.topic, p.partition); err != nil {
			return 0, err
		}
	}
	if len(wms) == 0 {
		return 0, errors.New("replay: the hot tier returned no watermarks")
	}
	p.watermarks, p.epoch = wms, epoch
	applied, ok, err := in.arms.PartitionApplied(ctx, p.topic, p.partition, epoch)
	if err != nil {
		return 0, err
	}
	start := from
	switch {
	case ok && applied+1 < from:
		start = applied + 1
	case !ok && !p.shadow:
		if start, err = src.earliest(ctx, p.partition); err != nil {
			return 0, err
		}
		start = min(start, from)
	}
	p.applied = applied
	if !ok {
		p.applied = start - 1
	}
	if start < from {
		p.stats.Before = from - start
		in.log.Info("replay starts before its range: the namespace has not applied the offsets before it",
			"partition", p.partition, "from", from, "start", start)
	}
	return start, nil
}
