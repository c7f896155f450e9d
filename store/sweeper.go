package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// SweeperConfig configures a Sweeper.
type SweeperConfig struct {
	// Interval is the time between two sweeps.
	Interval time.Duration
	// SnapshotEvery is the time between two arm snapshots; 0 takes none.
	SnapshotEvery time.Duration
	// Limit bounds the users offloaded per activity shard and sweep.
	Limit  int
	Logger *slog.Logger
}

// DefaultSweeperConfig returns the defaults: a sweep every 10 s of up to
// 1,000 users per activity shard, a snapshot every 5 minutes.
func DefaultSweeperConfig() SweeperConfig {
	return SweeperConfig{Interval: 10 * time.Second, SnapshotEvery: 5 * time.Minute, Limit: 1000}
}

// Validate reports a configuration that cannot work.
func (c SweeperConfig) Validate() error {
	if c.Interval <= 0 || c.Limit < 1 || c.SnapshotEvery < 0 {
		return errors.New("store: sweep interval and limit must be positive, snapshot interval not negative")
	}
	return nil
}

// Sweeper offloads idle users and snapshots the arm counts on a schedule.
// Any number of sweepers may run against one hot tier.
type Sweeper struct {
	tier *Tier
	cfg  SweeperConfig
	log  *slog.Logger
}

// NewSweeper returns a sweeper of tier.
func NewSweeper(tier *Tier, cfg SweeperConfig) (*Sweeper, error) {
	if tier == nil {
		return nil, errors.New("store: sweeper needs a tier")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sweeper{tier: tier, cfg: cfg, log: cfg.Logger.With("component", "sweeper")}, nil
}

// Run sweeps every interval, and snapshots every SnapshotEvery, until ctx
// ends. Errors (a cold tier that is down) are logged and the work is tried
// again next time.
func (s *Sweeper) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	var lastSnapshot time.Time
	for {
		s.Step(ctx, &lastSnapshot)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Step is one round of Run: a sweep, and a snapshot if the last one is
// SnapshotEvery old; lastSnapshot is updated when a snapshot is taken.
func (s *Sweeper) Step(ctx context.Context, lastSnapshot *time.Time) {
	n, err := s.tier.Sweep(ctx, s.cfg.Limit)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("sweep", "offloaded", n, "err", err)
	} else if n > 0 {
		s.log.Info("sweep", "offloaded", n)
	}
	now := s.tier.cfg.Now()
	if s.cfg.SnapshotEvery <= 0 || now.Sub(*lastSnapshot) < s.cfg.SnapshotEvery {
		return
	}
	snap, err := s.tier.Snapshot(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("snapshot", "err", err)
		}
		return
	}
	*lastSnapshot = now
	s.log.Info("snapshot", "id", snap.ID, "replay_from", snap.ReplayFrom)
}
