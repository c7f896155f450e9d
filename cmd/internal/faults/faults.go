// Package faults holds the fault-injection wrappers the binaries install
// when a -fault-* flag asks for one (the chaos scenarios and integration
// tests do): production code carries no fault knobs, only these wrappers
// around its interfaces. Every delay honours its context.
package faults

import (
	"context"
	"time"

	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/state"
)

// Sleep waits d or until ctx ends, and returns ctx's error in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SlowCold delays the first cold-tier write of every offload (its
// history) by Delay, widening the window in which an event can land on a
// session being flushed.
type SlowCold struct {
	store.ColdTier
	Delay time.Duration
}

var _ store.ColdTier = SlowCold{}

// WriteHistory waits Delay, then writes.
func (c SlowCold) WriteHistory(ctx context.Context, events []state.HistoryEvent) error {
	if err := Sleep(ctx, c.Delay); err != nil {
		return err
	}
	return c.ColdTier.WriteHistory(ctx, events)
}

// CommitDelay returns a hook that waits d before a commit (nil when d is
// 0), widening the window between writing a batch's state and committing
// its offsets, where a kill tests redelivery.
func CommitDelay(d time.Duration) func(ctx context.Context) error {
	if d <= 0 {
		return nil
	}
	return func(ctx context.Context) error { return Sleep(ctx, d) }
}
