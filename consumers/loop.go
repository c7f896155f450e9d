package consumers

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// The partition loop: fetch → handle (write, publish) → commit, written
// once for ingest, the scorer and replay. What a batch means is behind
// batchHandler; the loop owns the offsets, the retries and the commits.

// batchHandler handles the batches of one partition; the loop's goroutine
// owns it.
type batchHandler interface {
	// start decides where to fetch from, given the position the loop is at
	// (the committed offset at first, -1 when the group has none). The
	// loop calls it before the first fetch and again after a batch failed.
	start(ctx context.Context, offset int64) (int64, error)
	// handle processes one batch and returns nil only once its effects are
	// durable: the loop then may commit past it. ctx bounds the work
	// (it outlives member by the drain timeout); member ends when the
	// worker is told to stop.
	handle(ctx, member context.Context, batch []record) error
}

// holder is a batchHandler that keeps part of a handled batch's work
// pending past handle (the scorer's responses to a reply topic not created
// yet): held reports the lowest offset whose effects are not yet durable,
// and the loop commits no further; idle runs when a fetch finds nothing, so
// the pending work moves on without new records.
type holder interface {
	held() (offset int64, ok bool)
	idle(ctx context.Context)
}

// source is where the loop reads records (fetcher implements it).
type source interface {
	fetch(ctx context.Context, partition int, offset int64) ([]record, int64, error)
	earliest(ctx context.Context, partition int) (int64, error)
}

// committer commits offsets (a *kafka.Generation).
type committer interface {
	CommitOffsets(offsets map[string]map[int]int64) error
}

// loop is one partition's fetch → handle → commit cycle.
type loop struct {
	src       source
	h         batchHandler
	topic     string
	partition int
	// gen commits the offsets; nil in a replay, which commits nothing.
	gen committer
	// commitInterval spaces commits: 0 commits after every batch.
	commitInterval time.Duration
	drainTimeout   time.Duration
	// beforeCommit, if set, runs before every commit (a test hook).
	beforeCommit func(ctx context.Context) error
	// replay bounds: records at or after end, or outside [fromTime,
	// toTime) when set, are not handled; progress gets the offsets passed.
	end              int64
	fromTime, toTime time.Time
	progress         func(int)
	batchRecords     Observer
	batchSeconds     Observer
	log              *slog.Logger
	now              func() time.Time
	newBackoff       func() *backoff
}

func (l *loop) setDefaults() {
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.batchRecords, l.batchSeconds = orNone(l.batchRecords), orNone(l.batchSeconds)
	if l.now == nil {
		l.now = time.Now
	}
	if l.newBackoff == nil {
		l.newBackoff = newBackoff
	}
}

// consume runs the loop for the lifetime of a generation, from offset. ctx
// is the worker's, gctx the generation's: either ending stops it, but a
// batch already fetched is finished, within the drain timeout. Every error
// is retried (with backoff); the loop ends when its generation does.
func (l *loop) consume(ctx, gctx context.Context, offset int64) {
	l.setDefaults()
	log := l.log.With("partition", l.partition)
	stop := func() bool { return ctx.Err() != nil || gctx.Err() != nil }
	backoff := l.newBackoff()
	committed, lastCommit := offset, l.now()
	// commit commits the position reached; it reports false when the
	// generation is over.
	holding, _ := l.h.(holder)
	commit := func() bool {
		pos := offset
		if holding != nil {
			if low, ok := holding.held(); ok && low < pos {
				pos = low
			}
		}
		if pos <= committed {
			return true
		}
		if l.beforeCommit != nil {
			_ = l.beforeCommit(gctx)
		}
		if err := l.gen.CommitOffsets(map[string]map[int]int64{l.topic: {l.partition: pos}}); err != nil {
			// The next owner resumes from the last commit: the watermarks
			// make ingest's redelivery harmless, and the scorer's clients
			// see a duplicate with the same request id, never a gap.
			log.Info("commit refused; generation ended", "err", err)
			return false
		}
		committed, lastCommit = pos, l.now()
		return true
	}
	defer commit()
	started := false
	for !stop() {
		if !started {
			from, err := l.h.start(gctx, offset)
			if err != nil {
				log.Warn("starting partition", "offset", offset, "err", err)
				backoff.wait(gctx)
				continue
			}
			if offset < 0 {
				committed = from // nothing to commit before the first batch
			}
			offset, started = from, true
		}
		batch, next, err := l.src.fetch(gctx, l.partition, offset)
		if err != nil {
			if !stop() {
				log.Warn("fetching", "offset", offset, "err", err)
				backoff.wait(gctx)
			}
			continue
		}
		if len(batch) == 0 {
			offset = next
			if holding != nil {
				holding.idle(gctx)
			}
			if !commit() {
				return
			}
			continue
		}
		t0 := l.now()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.drainTimeout)
		err = l.h.handle(wctx, ctx, batch)
		cancel()
		if err != nil {
			// Nothing was committed past it: start again and fetch the
			// same batch.
			log.Warn("processing batch", "offset", offset, "err", err)
			started = false
			backoff.wait(gctx)
			continue
		}
		l.batchRecords.Observe(float64(len(batch)))
		l.batchSeconds.Observe(l.now().Sub(t0).Seconds())
		offset = next
		backoff.reset()
		if l.now().Sub(lastCommit) >= l.commitInterval && !commit() {
			return
		}
	}
}

// replay runs the loop over [from, end) once, without committing, and
// returns the first error: a replay is a command, not a service.
func (l *loop) replay(ctx context.Context, from int64) error {
	l.setDefaults()
	offset, err := l.h.start(ctx, from)
	if err != nil {
		return err
	}
	for offset < l.end {
		batch, next, err := l.src.fetch(ctx, l.partition, offset)
		if err != nil {
			return fmt.Errorf("fetching %s/%d at %d: %w", l.topic, l.partition, offset, err)
		}
		if next <= offset && len(batch) == 0 {
			return fmt.Errorf("fetching %s/%d at %d: no progress", l.topic, l.partition, offset)
		}
		kept := batch[:0]
		for _, rec := range batch {
			if rec.offset >= l.end {
				break
			}
			if (!l.fromTime.IsZero() && rec.time.Before(l.fromTime)) || (!l.toTime.IsZero() && !rec.time.Before(l.toTime)) {
				continue
			}
			kept = append(kept, rec)
		}
		if len(kept) > 0 {
			if err := l.h.handle(ctx, ctx, kept); err != nil {
				return err
			}
		}
		if l.progress != nil {
			l.progress(int(min(next, l.end) - offset))
		}
		offset = next
	}
	return nil
}
