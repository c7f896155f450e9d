package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banditstream/banditstream/store/state"
)

// HotTier is the hot tier as tiering uses it (hot.Hot implements it): each
// method is one atomic step; the order of the steps is decided here.
type HotTier interface {
	Shards() int
	Epoch(ctx context.Context) (string, error)

	SessionsLoaded(ctx context.Context, users []string) ([]bool, error)
	LockSession(ctx context.Context, user string, ttl time.Duration) (token string, ok bool, err error)
	UnlockSession(ctx context.Context, user, token string) error
	InstallSession(ctx context.Context, token, epoch string, st state.UserState, recent []state.HistoryEvent, nowMs int64) (bool, error)
	ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]state.UserEvent, limits state.SessionLimits, nowMs int64) (notLoaded, stale []string, dups []int64, err error)
	DropStaleSession(ctx context.Context, user, epoch string) error
	TouchSessions(ctx context.Context, users []string, nowMs int64) ([]state.SessionStats, error)

	ReadSession(ctx context.Context, user string) (state.HotSession, bool, error)
	PendingEvents(ctx context.Context, s state.HotSession, from int64, n int) (evs []state.HistoryEvent, next int64, ok bool, err error)
	EvictSession(ctx context.Context, s state.HotSession) (bool, error)
	KeepSession(ctx context.Context, s state.HotSession, readMs int64) error
	DropActivity(ctx context.Context, user string, seenMs int64) error
	IdleUsers(ctx context.Context, cutoffMs int64, limit int) ([]string, error)
	DueUsers(ctx context.Context, cutoffMs int64, limit int) ([]string, error)

	LockSnapshot(ctx context.Context) (release func(), ok bool, err error)
	ReplayPositions(ctx context.Context, epoch string) (map[string]int64, error)
	SnapshotShard(ctx context.Context, shard int, epoch string) (state.ShardSnapshot, error)
	RecoverWith(ctx context.Context, seen string, restore func(epoch string) error) (string, error)
	RestoreShard(ctx context.Context, sh state.ShardSnapshot, epoch string) error
	MarkPartitionApplied(ctx context.Context, topic string, partition int, last int64, epoch string) error
}

// ColdTier is the cold tier as tiering uses it (cold.Cold implements it).
type ColdTier interface {
	ReadUserState(ctx context.Context, user string) (state.UserState, error)
	RecentHistory(ctx context.Context, user string, limit int) ([]state.HistoryEvent, error)
	WriteHistory(ctx context.Context, events []state.HistoryEvent) error
	WriteUserState(ctx context.Context, st state.UserState) error

	WriteShardSnapshot(ctx context.Context, id int64, sh state.ShardSnapshot) error
	CompleteSnapshot(ctx context.Context, s state.Snapshot) error
	LatestSnapshot(ctx context.Context) (state.Snapshot, error)
	ReadShardSnapshot(ctx context.Context, id int64, shard int) (state.ShardSnapshot, error)
	PruneSnapshots(ctx context.Context, keep int) (int, error)
	NextSnapshotID(ctx context.Context) (int64, error)
}

// TierConfig configures the tiering of user state.
type TierConfig struct {
	// HistoryCap bounds a hot user's recent-history list.
	HistoryCap int
	// IdleTimeout is how long a user stays hot without activity.
	IdleTimeout time.Duration
	// FlushAfter and FlushPending bound the events of a hot user not yet in
	// the cold tier, in age and in number: a user who never goes idle is
	// flushed without eviction by the next sweep once either is passed, so
	// the user's cold state is never much older than FlushAfter and the
	// snapshots' replay positions keep moving. Defaults 5 minutes and 1,000
	// events; FlushPending 0 bounds the age alone.
	FlushAfter   time.Duration
	FlushPending int
	// FlushChunk bounds the pending events read from the hot tier in one
	// reply and written to the cold tier in one go. Default 1,000.
	FlushChunk int
	// UserCounts bounds a user's own counts (one per arm and event type):
	// past it, events on arms the user has no count for yet still reach
	// the history and the arms' counts, not the user's own. It bounds what
	// the scorer reads of a user per request and the state a flush writes
	// to the cold tier in one row. Default DefaultUserCounts, at most
	// MaxUserCounts.
	UserCounts int
	// DedupWindow is how many of a user's latest events the hot tier
	// remembers the ids of (DedupRecordBytes each), so that an event at
	// two offsets (a producer's retry, a re-driven dead letter, an event
	// written again) counts once; the window travels with the user's state
	// to the cold tier and back. Default DefaultDedupWindow; NoDedup turns
	// it off.
	DedupWindow int
	NoDedup     bool
	// LoadWait bounds waiting for another loader of the same session.
	LoadWait time.Duration
	// LoadParallelism bounds concurrent session loads, and a sweep's
	// concurrent offloads and flushes.
	LoadParallelism int
	// LoadLockTTL is how long a session-load lock outlives a loader that
	// died or stalled holding it (a live one renews it); default 10 s.
	LoadLockTTL time.Duration
	// KeepSnapshots is how many complete arm snapshots the cold tier keeps;
	// older ones, and shards of snapshots never completed, are deleted
	// after each snapshot. Default 3.
	KeepSnapshots int
	Logger        *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultUserCounts and MaxUserCounts are the default and the largest
// bound of a user's own counts. A user state with MaxUserCounts arms of the
// longest ids the schema accepts (a 256-byte context and item) is ≈ 11.5
// MB, within the 16 MiB a CQL request and a Cassandra mutation may hold.
const (
	DefaultUserCounts = 10_000
	MaxUserCounts     = 20_000
)

// DefaultDedupWindow is the default deduplication window in events per
// user: 256 records of hot.DedupRecordBytes, 4,352 bytes for a user with
// that many events.
const DefaultDedupWindow = 256

// MaxDedupWindow is the largest window: 100,000 events, 1.7 MB per user
// at most, scanned for every event of the user.
const MaxDedupWindow = 100_000

// DefaultTierConfig returns the defaults: 200 recent events per user, 30
// minutes idle, 10 s to wait for another loader, 16 loads at a time.
func DefaultTierConfig() TierConfig {
	return TierConfig{HistoryCap: 200, IdleTimeout: 30 * time.Minute, FlushAfter: 5 * time.Minute, FlushPending: 1000, FlushChunk: 1000, UserCounts: DefaultUserCounts, DedupWindow: DefaultDedupWindow,
		LoadWait: 10 * time.Second, LoadParallelism: 16, LoadLockTTL: 10 * time.Second, KeepSnapshots: 3}
}

func (c *TierConfig) setDefaults() {
	d := DefaultTierConfig()
	if c.HistoryCap == 0 {
		c.HistoryCap = d.HistoryCap
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.FlushAfter == 0 {
		c.FlushAfter = d.FlushAfter
	}
	if c.FlushChunk == 0 {
		c.FlushChunk = d.FlushChunk
	}
	if c.UserCounts == 0 {
		c.UserCounts = d.UserCounts
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = d.DedupWindow
	}
	if c.LoadWait == 0 {
		c.LoadWait = d.LoadWait
	}
	if c.LoadParallelism == 0 {
		c.LoadParallelism = d.LoadParallelism
	}
	if c.KeepSnapshots == 0 {
		c.KeepSnapshots = d.KeepSnapshots
	}
	if c.LoadLockTTL == 0 {
		c.LoadLockTTL = d.LoadLockTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports a configuration that cannot work.
func (c TierConfig) Validate() error {
	if c.HistoryCap < 1 || c.IdleTimeout <= 0 || c.LoadWait <= 0 || c.LoadParallelism < 1 || c.LoadLockTTL <= 0 || c.KeepSnapshots < 1 ||
		c.FlushAfter <= 0 || c.FlushChunk < 1 || c.FlushPending < 0 {
		return errors.New("store: history cap, idle timeout, flush age, flush chunk, load wait, load lock TTL, load parallelism and snapshots kept must be positive, the flush bound in events not negative")
	}
	if c.DedupWindow < 1 || c.DedupWindow > MaxDedupWindow {
		return fmt.Errorf("store: the deduplication window must be 1 to %d events", MaxDedupWindow)
	}
	if c.UserCounts < 1 || c.UserCounts > MaxUserCounts {
		return fmt.Errorf("store: a user's own counts must be bounded by 1 to %d", MaxUserCounts)
	}
	return nil
}

// Tier keeps per-user state hot while a user is active and in the cold
// tier otherwise: a session is loaded from the cold tier on a user's first
// event or request, and flushed back and evicted when the user goes idle.
type Tier struct {
	hot  HotTier
	cold ColdTier
	cfg  TierConfig
	log  *slog.Logger

	loads, offloads, flushes, refusals atomic.Int64
}

// TierStats counts what a Tier did since it was made.
type TierStats struct {
	// SessionLoads are sessions this process installed from the cold tier.
	SessionLoads int64
	// Offloads are sessions this process flushed to the cold tier and
	// evicted.
	Offloads int64
	// Flushes are sessions of active users this process flushed to the
	// cold tier without evicting them.
	Flushes int64
	// ColdRefusals are flushes the cold tier refused for good (a grant or
	// the schema missing, a write past its size limit): the users stay hot
	// and are tried again each sweep, so an operator can fix the cause.
	ColdRefusals int64
}

// Stats returns the counts so far.
func (t *Tier) Stats() TierStats {
	return TierStats{SessionLoads: t.loads.Load(), Offloads: t.offloads.Load(), Flushes: t.flushes.Load(), ColdRefusals: t.refusals.Load()}
}

// NewTier returns the tiering of hot and cold.
func NewTier(hot HotTier, cold ColdTier, cfg TierConfig) (*Tier, error) {
	cfg.setDefaults()
	if hot == nil || cold == nil {
		return nil, errors.New("store: tier needs a hot and a cold tier")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tier{hot: hot, cold: cold, cfg: cfg, log: cfg.Logger.With("component", "tier")}, nil
}

func (t *Tier) nowMs() int64 { return t.cfg.Now().UnixMilli() }

// Epoch returns the hot tier's current epoch, "" when it has lost its state
// and is not recovered yet.
func (t *Tier) Epoch(ctx context.Context) (string, error) { return t.hot.Epoch(ctx) }

// Sessions reads the session state of users in one round trip and records
// their activity, so a user who keeps asking for rankings stays hot. A user
// not hot gets Loaded false: start the session with EnsureLoaded.
func (t *Tier) Sessions(ctx context.Context, users []string) ([]state.SessionStats, error) {
	return t.hot.TouchSessions(ctx, users, t.nowMs())
}

// EnsureLoaded starts the session of every user not hot: it loads the
// user's state and recent history from the cold tier, once, however many
// goroutines and processes ask at the same time. Sessions are tagged with
// epoch, the hot tier's epoch the caller works in.
func (t *Tier) EnsureLoaded(ctx context.Context, users []string, epoch string) error {
	ok, err := t.hot.SessionsLoaded(ctx, users)
	if err != nil {
		return err
	}
	var todo []string
	for i, u := range users {
		if !ok[i] {
			todo = append(todo, u)
		}
	}
	return t.each(ctx, todo, func(u string) error { return t.load(ctx, u, epoch) })
}

// load installs a user's session under the session-load lock, or waits for
// whoever holds it to install it.
func (t *Tier) load(ctx context.Context, user, epoch string) error {
	deadline := t.cfg.Now().Add(t.cfg.LoadWait)
	for {
		token, got, err := t.hot.LockSession(ctx, user, t.cfg.LoadLockTTL)
		if err != nil {
			return err
		}
		if got {
			err := t.install(ctx, user, token, epoch)
			if !errors.Is(err, state.ErrLockLost) || t.cfg.Now().After(deadline) {
				return err
			}
			continue // read the cold state again, under a new lock
		}
		ok, err := t.hot.SessionsLoaded(ctx, []string{user})
		if err != nil {
			return err
		}
		if ok[0] {
			return nil
		}
		if t.cfg.Now().After(deadline) {
			return fmt.Errorf("session of %s: still loading elsewhere after %s", user, t.cfg.LoadWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (t *Tier) install(ctx context.Context, user, token, epoch string) error {
	release := func() { _ = t.hot.UnlockSession(context.WithoutCancel(ctx), user, token) }
	st, err := t.cold.ReadUserState(ctx, user)
	if errors.Is(err, state.ErrNotFound) {
		st, err = state.UserState{UserID: user}, nil
	}
	if err != nil {
		release()
		return err
	}
	st.UserID = user
	hist, err := t.cold.RecentHistory(ctx, user, t.cfg.HistoryCap)
	if err != nil {
		release()
		return err
	}
	installed, err := t.hot.InstallSession(ctx, token, epoch, st, hist, t.nowMs())
	if err != nil {
		release()
		return err
	}
	if installed {
		t.loads.Add(1)
	}
	return nil
}

// ApplyUserEvents applies each user's events above the user's watermark
// for topic/partition, atomically per user, each event id once within the
// user's deduplication window, and records the activity. It returns the
// users whose session was not loaded (evicted meanwhile, or loaded in
// another epoch and now dropped; load them and apply again), and the
// offsets of the events decided duplicates, now or by an earlier delivery
// of the same offsets: those must change no count.
func (t *Tier) ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]state.UserEvent) (notLoaded []string, dups []int64, err error) {
	limits := state.SessionLimits{HistoryCap: t.cfg.HistoryCap, FlushPending: t.cfg.FlushPending, UserCounts: t.cfg.UserCounts, DedupWindow: t.cfg.DedupWindow}
	if t.cfg.NoDedup {
		limits.DedupWindow = 0
	}
	notLoaded, stale, dups, err := t.hot.ApplyUserEvents(ctx, topic, partition, epoch, byUser, limits, t.nowMs())
	if err != nil {
		return nil, nil, err
	}
	for _, u := range stale {
		if err := t.hot.DropStaleSession(ctx, u, epoch); err != nil {
			return nil, nil, err
		}
	}
	return notLoaded, dups, nil
}

// Offload flushes a user's hot state to the cold tier and evicts it if
// nothing changed meanwhile. An event that lands during the flush keeps the
// user hot; it is flushed by a later offload. It reports whether the user
// was evicted.
//
// epoch is the hot tier's current epoch: a session of another epoch is
// dropped without a flush (it is replayed), and nothing is written to the
// cold tier if the epoch changes during the offload.
func (t *Tier) Offload(ctx context.Context, user, epoch string) (bool, error) {
	return t.offload(ctx, user, epoch, false)
}

// Flush writes a hot user's pending events and state to the cold tier and
// keeps the session: what an offload does for a user who is not idle.
func (t *Tier) Flush(ctx context.Context, user, epoch string) error {
	_, err := t.offload(ctx, user, epoch, true)
	return err
}

func (t *Tier) offload(ctx context.Context, user, epoch string, keep bool) (bool, error) {
	if epoch == "" {
		return false, errors.New("store: no offload while the hot tier is not recovered")
	}
	readMs := t.nowMs()
	s, ok, err := t.hot.ReadSession(ctx, user)
	if err != nil {
		return false, err
	}
	if !ok {
		// Not hot: only index entries are left.
		return true, t.hot.DropActivity(ctx, user, readMs)
	}
	if s.Epoch != epoch {
		err := t.hot.DropStaleSession(ctx, user, epoch)
		return err == nil, err
	}
	// A session read after a loss carries the old epoch while the hot tier
	// has none: checking after the read keeps it out of the cold tier.
	if now, err := t.hot.Epoch(ctx); err != nil || now != epoch {
		return false, errors.Join(err, errors.New("store: hot tier epoch changed during an offload"))
	}
	t.log.Debug("offload: session read", "user", user, "version", s.Version, "pending", s.PendingEnd-s.PendingStart, "keep", keep)
	// The pending events go in chunks: however many a user piled up, no
	// reply and no write holds more than FlushChunk of them.
	for from := s.PendingStart; from < s.PendingEnd; {
		evs, next, ok, err := t.hot.PendingEvents(ctx, s, from, t.cfg.FlushChunk)
		if err != nil {
			return false, err
		}
		if !ok {
			// Evicted meanwhile by another offload, which flushed them.
			return false, nil
		}
		if err := t.cold.WriteHistory(ctx, evs); err != nil {
			return false, t.coldRefused(user, err)
		}
		from = next
	}
	s.State.FlushedMs = t.nowMs()
	if err := t.cold.WriteUserState(ctx, s.State); err != nil {
		return false, t.coldRefused(user, err)
	}
	if keep {
		if err := t.hot.KeepSession(ctx, s, readMs); err != nil {
			return false, err
		}
		t.flushes.Add(1)
		return false, nil
	}
	evicted, err := t.hot.EvictSession(ctx, s)
	t.log.Debug("offload: cold state written", "user", user, "version", s.Version, "evicted", evicted)
	if evicted {
		t.offloads.Add(1)
	}
	return evicted, err
}

// coldRefused counts and logs a flush the cold tier refused for good, and
// returns err.
func (t *Tier) coldRefused(user string, err error) error {
	if errors.Is(err, state.ErrRefused) {
		t.refusals.Add(1)
		t.log.Error("the cold tier refuses a flush: the user stays hot and is tried again each sweep", "user", user, "err", err)
	}
	return err
}

// Sweep offloads up to limit users idle longer than the idle timeout from
// each activity shard, and flushes without eviction up to limit users per
// flush-index shard whose pending events passed FlushAfter or
// FlushPending. Any number of sweepers may run: offloads of the same user
// by two of them write the same cold state and evict once. It returns the
// users evicted.
func (t *Tier) Sweep(ctx context.Context, limit int) (int, error) {
	epoch, err := t.hot.Epoch(ctx)
	if err != nil {
		return 0, err
	}
	if epoch == "" {
		// Lost and not recovered yet: ingest recovers it; sweep after.
		return 0, nil
	}
	now := t.nowMs()
	users, err := t.hot.IdleUsers(ctx, now-t.cfg.IdleTimeout.Milliseconds(), limit)
	errs := []error{err}
	var evicted atomic.Int64
	errs = append(errs, t.each(ctx, users, func(u string) error {
		ok, err := t.Offload(ctx, u, epoch)
		if ok {
			evicted.Add(1)
		}
		return err
	}))
	due, err := t.hot.DueUsers(ctx, now-t.cfg.FlushAfter.Milliseconds(), limit)
	errs = append(errs, err, t.each(ctx, due, func(u string) error { return t.Flush(ctx, u, epoch) }))
	return int(evicted.Load()), errors.Join(errs...)
}

// each runs fn for every user, LoadParallelism at a time: loads and a
// sweep's offloads wait on the cold tier, and a sweep round must not take
// longer than the bounds it keeps.
func (t *Tier) each(ctx context.Context, users []string, fn func(string) error) error {
	sem := make(chan struct{}, t.cfg.LoadParallelism)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, u := range users {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(u); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Snapshot writes the arm counts of every shard, with their watermarks,
// to the cold tier, and where a replay after restoring them must start for
// each partition. One snapshot at a time across instances.
func (t *Tier) Snapshot(ctx context.Context) (state.Snapshot, error) {
	release, got, err := t.hot.LockSnapshot(ctx)
	if err != nil {
		return state.Snapshot{}, fmt.Errorf("store: taking the snapshot lease: %w", err)
	}
	if !got {
		return state.Snapshot{}, errors.New("store: another snapshot is running")
	}
	defer release()
	epoch, err := t.hot.Epoch(ctx)
	if err != nil || epoch == "" {
		return state.Snapshot{}, errors.Join(err, errors.New("store: no snapshot while the hot tier is not recovered"))
	}
	replay, err := t.hot.ReplayPositions(ctx, epoch)
	if err != nil {
		return state.Snapshot{}, err
	}
	id, err := t.cold.NextSnapshotID(ctx)
	if err != nil {
		return state.Snapshot{}, err
	}
	s := state.Snapshot{ID: id, Epoch: epoch, Shards: t.hot.Shards(), TakenMs: t.nowMs(), ReplayFrom: replay}
	for shard := 0; shard < s.Shards; shard++ {
		sh, err := t.hot.SnapshotShard(ctx, shard, epoch)
		if err != nil {
			return state.Snapshot{}, err
		}
		if err := t.cold.WriteShardSnapshot(ctx, s.ID, sh); err != nil {
			return state.Snapshot{}, err
		}
	}
	if err := t.cold.CompleteSnapshot(ctx, s); err != nil {
		return state.Snapshot{}, err
	}
	// Older snapshots are pruned under the same lock; one that fails is
	// retried at the next snapshot.
	if n, err := t.cold.PruneSnapshots(ctx, t.cfg.KeepSnapshots); err != nil {
		t.log.Warn("pruning snapshots", "err", err)
	} else if n > 0 {
		t.log.Debug("pruned snapshots", "deleted", n, "kept", t.cfg.KeepSnapshots)
	}
	return s, nil
}

// Recover starts a new epoch after the hot tier lost its state, first
// restoring the latest snapshot of the arm counts and where each
// partition's replay must start. Writers then replay each partition from
// PartitionApplied + 1, or from the earliest record when no snapshot
// covers it.
func (t *Tier) Recover(ctx context.Context, seen string) (string, error) {
	return t.hot.RecoverWith(ctx, seen, func(epoch string) error {
		s, err := t.cold.LatestSnapshot(ctx)
		if errors.Is(err, state.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if s.Shards != t.hot.Shards() {
			return fmt.Errorf("store: snapshot %d has %d shards, the hot tier %d", s.ID, s.Shards, t.hot.Shards())
		}
		for shard := 0; shard < s.Shards; shard++ {
			sh, err := t.cold.ReadShardSnapshot(ctx, s.ID, shard)
			if err != nil {
				return err
			}
			if err := t.hot.RestoreShard(ctx, sh, epoch); err != nil {
				return fmt.Errorf("restoring shard %d of snapshot %d: %w", shard, s.ID, err)
			}
		}
		for field, from := range s.ReplayFrom {
			topic, pstr, _ := strings.Cut(field, "/")
			partition, err := strconv.Atoi(pstr)
			if err != nil {
				return fmt.Errorf("store: snapshot %d names partition %q", s.ID, field)
			}
			if err := t.hot.MarkPartitionApplied(ctx, topic, partition, from-1, epoch); err != nil {
				return err
			}
		}
		t.log.Warn("restored arm snapshot", "id", s.ID, "taken_ms", s.TakenMs, "replay_from", s.ReplayFrom)
		return nil
	})
}

// LatestSnapshot returns the newest complete arm snapshot, or
// state.ErrNotFound.
func (t *Tier) LatestSnapshot(ctx context.Context) (state.Snapshot, error) {
	return t.cold.LatestSnapshot(ctx)
}

// ColdState returns a user's state as last offloaded, or state.ErrNotFound.
func (t *Tier) ColdState(ctx context.Context, user string) (state.UserState, error) {
	return t.cold.ReadUserState(ctx, user)
}
