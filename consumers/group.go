package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// groupConfig is what a consumer-group member needs to join.
type groupConfig struct {
	brokers        []string
	groupID        string
	topic          string
	sessionTimeout time.Duration
	dialer         *kafka.Dialer
	log            *slog.Logger
	lost           func(partition int) // called when a partition's worker ends
}

// partitionFunc consumes one partition for the lifetime of a generation,
// from offset (-1 when the group has no commit for it). ctx is the
// member's, gctx the generation's.
type partitionFunc func(ctx, gctx context.Context, gen *kafka.Generation, partition int, offset int64)

// runGroup joins the group and runs one goroutine per assigned partition
// per generation, until ctx ends; kafka-go's generation waits for those
// goroutines before the next join and on close.
func runGroup(ctx context.Context, gc groupConfig, run partitionFunc) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                     gc.groupID,
		Brokers:                gc.brokers,
		Dialer:                 gc.dialer,
		Topics:                 []string{gc.topic},
		StartOffset:            kafka.FirstOffset,
		WatchPartitionChanges:  true,
		PartitionWatchInterval: 5 * time.Second,
		HeartbeatInterval:      time.Second,
		SessionTimeout:         gc.sessionTimeout,
		RebalanceTimeout:       gc.sessionTimeout,
		JoinGroupBackoff:       time.Second,
	})
	if err != nil {
		return fmt.Errorf("joining group %s: %w", gc.groupID, err)
	}
	defer group.Close()
	backoff := newBackoff()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, kafka.ErrGroupClosed) {
				return fmt.Errorf("group %s: %w", gc.groupID, err)
			}
			// Rebalances in progress, coordinator moves, brokers restarting:
			// join again.
			gc.log.Warn("joining the group", "group", gc.groupID, "err", err)
			backoff.wait(ctx)
			continue
		}
		backoff.reset()
		assigned := gen.Assignments[gc.topic]
		gc.log.Info("generation", "id", gen.ID, "partitions", len(assigned))
		for _, a := range assigned {
			partition, offset := a.ID, a.Offset
			gen.Start(func(gctx context.Context) {
				run(ctx, gctx, gen, partition, offset)
				gc.lost(partition)
			})
		}
	}
}

// Observer receives measurements; a prometheus.Histogram is one.
type Observer interface {
	Observe(float64)
}

type noObserver struct{}

func (noObserver) Observe(float64) {}

func orNone(o Observer) Observer {
	if o == nil {
		return noObserver{}
	}
	return o
}

// fetcher reads batches of records from the partitions of one topic.
type fetcher struct {
	client   *kafka.Client
	topic    string
	maxBytes int
	maxWait  time.Duration
	log      *slog.Logger
	lag      sync.Map // partition → records behind the end, at the last fetch
}

// Lag returns, for each partition this worker consumes, how many records
// were after the last batch it fetched.
func (f *fetcher) Lag() map[int]int64 {
	out := map[int]int64{}
	f.lag.Range(func(k, v any) bool {
		out[k.(int)] = v.(int64)
		return true
	})
	return out
}

func (f *fetcher) earliest(ctx context.Context, partition int) (int64, error) {
	resp, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Topics: map[string][]kafka.OffsetRequest{f.topic: {kafka.FirstOffsetOf(partition)}},
	})
	if err != nil {
		return 0, fmt.Errorf("listing offsets of %s/%d: %w", f.topic, partition, err)
	}
	for _, po := range resp.Topics[f.topic] {
		if po.Partition == partition {
			if po.Error != nil {
				return 0, fmt.Errorf("listing offsets of %s/%d: %w", f.topic, partition, po.Error)
			}
			return po.FirstOffset, nil
		}
	}
	return 0, fmt.Errorf("listing offsets of %s/%d: partition missing from the reply", f.topic, partition)
}

// record is one fetched Kafka record.
type record struct {
	offset  int64
	time    time.Time
	key     []byte
	value   []byte
	headers []kafka.Header
}

// fetch reads the records at offset and after, up to maxBytes, and returns
// them with the offset to fetch next.
func (f *fetcher) fetch(ctx context.Context, partition int, offset int64) ([]record, int64, error) {
	resp, err := f.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: f.topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: int64(f.maxBytes), MaxWait: f.maxWait,
		IsolationLevel: kafka.ReadCommitted,
	})
	if err != nil {
		return nil, offset, err
	}
	if resp.Error != nil {
		if errors.Is(resp.Error, kafka.OffsetOutOfRange) {
			// Retention removed what the last commit points at: what is
			// gone cannot be read; carry on from the earliest.
			first, ferr := f.earliest(ctx, partition)
			if ferr != nil {
				return nil, offset, ferr
			}
			f.log.Error("offset out of range; records lost to retention", "partition", partition, "offset", offset, "earliest", first)
			return nil, first, nil
		}
		return nil, offset, resp.Error
	}
	var out []record
	next := offset
	defer func() { f.lag.Store(partition, max(resp.HighWatermark-next, 0)) }()
	for {
		rec, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, offset, fmt.Errorf("reading records: %w", err)
		}
		if rec.Offset < offset {
			continue // a compressed batch can start before the asked offset
		}
		r := record{offset: rec.Offset, time: rec.Time, headers: rec.Headers}
		if r.key, err = readBytes(rec.Key); err != nil {
			return nil, offset, err
		}
		if r.value, err = readBytes(rec.Value); err != nil {
			return nil, offset, err
		}
		out = append(out, r)
		next = rec.Offset + 1
	}
	return out, next, nil
}

// readBytes reads a record's key or value into a buffer of its exact size
// (nil stays nil).
func readBytes(b kafka.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	out := make([]byte, b.Len())
	if _, err := io.ReadFull(b, out); err != nil {
		return nil, fmt.Errorf("reading a record: %w", err)
	}
	return out, nil
}
