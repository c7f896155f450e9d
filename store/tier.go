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

	"github.com/redis/go-redis/v9"
)

// TierConfig configures the tiering of user state.
type TierConfig struct {
	// HistoryCap bounds a hot user's recent-history list; default 200.
	HistoryCap int
	// IdleTimeout is how long a user stays hot without activity; default
	// 30 min.
	IdleTimeout time.Duration
	// LoadWait bounds waiting for another loader of the same session;
	// default 10 s.
	LoadWait time.Duration
	// LoadParallelism bounds concurrent session loads; default 16.
	LoadParallelism int
	// FaultColdLatency delays every cold-tier write of an offload: fault
	// injection for tests. Zero in production.
	FaultColdLatency time.Duration
	Logger           *slog.Logger
}

func (c *TierConfig) setDefaults() {
	if c.HistoryCap == 0 {
		c.HistoryCap = 200
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Minute
	}
	if c.LoadWait == 0 {
		c.LoadWait = 10 * time.Second
	}
	if c.LoadParallelism == 0 {
		c.LoadParallelism = 16
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Tier keeps per-user state hot while a user is active and in the cold
// tier otherwise: a session is loaded from the cold tier on a user's first
// event or request, and flushed back and evicted when the user goes idle.
type Tier struct {
	hot  *Hot
	cold *Cold
	cfg  TierConfig
	log  *slog.Logger

	loads, offloads atomic.Int64
}

// TierStats counts what a Tier did since it was made.
type TierStats struct {
	// SessionLoads are sessions this process installed from the cold tier.
	SessionLoads int64
	// Offloads are sessions this process flushed to the cold tier and
	// evicted.
	Offloads int64
}

// Stats returns the counts so far.
func (t *Tier) Stats() TierStats {
	return TierStats{SessionLoads: t.loads.Load(), Offloads: t.offloads.Load()}
}

// NewTier returns the tiering of hot and cold.
func NewTier(hot *Hot, cold *Cold, cfg TierConfig) (*Tier, error) {
	cfg.setDefaults()
	if hot == nil || cold == nil {
		return nil, errors.New("store: tier needs a hot and a cold tier")
	}
	if cfg.HistoryCap < 1 || cfg.IdleTimeout <= 0 || cfg.LoadWait <= 0 || cfg.LoadParallelism < 1 {
		return nil, errors.New("store: history cap, idle timeout, load wait and load parallelism must be positive")
	}
	return &Tier{hot: hot, cold: cold, cfg: cfg, log: cfg.Logger.With("component", "tier")}, nil
}

// Hot returns the hot tier.
func (t *Tier) Hot() *Hot { return t.hot }

// loaded reports which users have a session in the hot tier.
func (t *Tier) loaded(ctx context.Context, users []string) ([]bool, error) {
	pipe := t.hot.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGet(ctx, t.hot.keys.userKey(u, "m"), "l")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("checking sessions: %w", err)
	}
	out := make([]bool, len(users))
	for i, c := range cmds {
		out[i] = c.Val() == "1"
	}
	return out, nil
}

// Epoch returns the hot tier's current epoch, "" when it has lost its state
// and is not recovered yet (see Hot.Recover).
func (t *Tier) Epoch(ctx context.Context) (string, error) { return t.hot.currentEpoch(ctx) }

// EnsureLoaded starts the session of every user not hot: it loads the
// user's state and recent history from the cold tier, once, however many
// goroutines and processes ask at the same time. Sessions are tagged with
// epoch, the hot tier's epoch the caller works in.
func (t *Tier) EnsureLoaded(ctx context.Context, users []string, epoch string) error {
	ok, err := t.loaded(ctx, users)
	if err != nil {
		return err
	}
	var todo []string
	for i, u := range users {
		if !ok[i] {
			todo = append(todo, u)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	sem := make(chan struct{}, t.cfg.LoadParallelism)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, u := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := t.load(ctx, u, epoch); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (t *Tier) load(ctx context.Context, user, epoch string) error {
	k := t.hot.keys
	lock := k.userKey(user, "k")
	deadline := time.Now().Add(t.cfg.LoadWait)
	for {
		token := newToken()
		got, err := t.hot.rdb.SetNX(ctx, lock, token, 30*time.Second).Result()
		if err != nil {
			return fmt.Errorf("locking session of %s: %w", user, err)
		}
		if got {
			return t.install(ctx, user, token, epoch)
		}
		// Someone else is loading: wait for them.
		ok, err := t.loaded(ctx, []string{user})
		if err != nil {
			return err
		}
		if ok[0] {
			return nil
		}
		if time.Now().After(deadline) {
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
	k := t.hot.keys
	release := func() { t.hot.rdb.Del(context.WithoutCancel(ctx), k.userKey(user, "k")) }
	st, err := t.cold.ReadUserState(ctx, user)
	if err != nil && !errors.Is(err, ErrNotFound) {
		release()
		return err
	}
	hist, err := t.cold.RecentHistory(ctx, user, t.cfg.HistoryCap)
	if err != nil {
		release()
		return err
	}
	args := []any{token, st.Version, nowMs(), epoch, len(hist)}
	for _, e := range hist {
		args = append(args, encodeEvent(e))
	}
	args = append(args, len(st.Watermarks))
	for f, v := range st.Watermarks {
		args = append(args, "w:"+f, v)
	}
	for arm, counts := range st.ArmCounts {
		for ty, n := range counts {
			if n != 0 && ty < NumEventTypes {
				args = append(args, arm+"\x1f"+strconv.Itoa(ty), n)
			}
		}
	}
	keys := []string{k.userKey(user, "m"), k.userKey(user, "h"), k.userKey(user, "s"), k.userKey(user, "k")}
	installed, err := installScript.Run(ctx, t.hot.rdb, keys, args...).Int64()
	if err != nil {
		release()
		return fmt.Errorf("installing session of %s: %w", user, err)
	}
	if installed == 1 {
		t.loads.Add(1)
	}
	return nil
}

// ApplyUserEvents applies each user's events above the user's watermark
// for topic/partition, atomically per user, and records the activity. It
// returns the users whose session was not loaded (evicted meanwhile, or
// loaded in another epoch and now dropped); load them and apply again.
func (t *Tier) ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]UserEvent) ([]string, error) {
	k := t.hot.keys
	field := "w:" + watermarkField(topic, partition)
	now := nowMs()
	capArg := strconv.Itoa(t.cfg.HistoryCap)
	pipe := t.hot.rdb.Pipeline()
	users := make([]string, 0, len(byUser))
	cmds := make([]*redis.Cmd, 0, len(byUser))
	for u, evs := range byUser {
		args := make([]any, 4, 4+3*len(evs))
		args[0], args[1], args[2], args[3] = field, capArg, now, epoch
		for _, e := range evs {
			args = append(args, e.Offset, encodeEvent(e.Event), userArmField(e.Event, int(e.Event.Type)-1))
		}
		users = append(users, u)
		cmds = append(cmds, applyUserScript.Run(ctx, pipe, k.userKeys(u), args...))
	}
	pend := k.pendingKey(watermarkField(topic, partition))
	for u, evs := range byUser {
		pipe.ZAddGT(ctx, k.ActivityKey(u), redis.Z{Score: float64(now), Member: u})
		// The user's oldest event of this partition not yet in the cold
		// tier is at or after this one: a replay from here loses none.
		pipe.ZAddNX(ctx, pend, redis.Z{Score: float64(evs[0].Offset), Member: u})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := applyUserScript.Load(ctx, t.hot.rdb).Err(); err != nil {
				return nil, err
			}
			// Every user's script checks its watermark: running all again
			// applies nothing twice.
			return t.ApplyUserEvents(ctx, topic, partition, epoch, byUser)
		}
		return nil, fmt.Errorf("applying user events: %w", err)
	}
	var notLoaded []string
	for i, c := range cmds {
		n, _ := c.Int64()
		if n == -2 {
			if err := dropStaleScript.Run(ctx, t.hot.rdb, k.userKeys(users[i]), epoch).Err(); err != nil {
				return nil, fmt.Errorf("dropping a stale session of %s: %w", users[i], err)
			}
		}
		if n < 0 {
			notLoaded = append(notLoaded, users[i])
		}
	}
	return notLoaded, nil
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
	k := t.hot.keys
	if epoch == "" {
		return false, errors.New("store: no offload while the hot tier is not recovered")
	}
	res, err := snapshotScript.Run(ctx, t.hot.rdb, []string{k.userKey(user, "m"), k.userKey(user, "p"), k.userKey(user, "s")}).StringSlice()
	if err != nil {
		return false, fmt.Errorf("reading hot state of %s: %w", user, err)
	}
	if len(res) == 0 || res[0] != "1" {
		// Not hot: only the activity entry is left.
		_, err := dropActivityScript.Run(ctx, t.hot.rdb, []string{k.ActivityKey(user)}, user, nowMs()).Result()
		return true, err
	}
	snap, err := parseSnapshot(user, res[1:])
	if err != nil {
		return false, err
	}
	if snap.epoch != epoch {
		err := dropStaleScript.Run(ctx, t.hot.rdb, k.userKeys(user), epoch).Err()
		return err == nil, err
	}
	// A session snapshotted after a loss carries the old epoch while the
	// hot tier has none: checking after the snapshot keeps it out of the
	// cold tier.
	if now, err := t.hot.currentEpoch(ctx); err != nil || now != epoch {
		return false, errors.Join(err, errors.New("store: hot tier epoch changed during an offload"))
	}
	t.log.Debug("offload: session read", "user", user, "version", snap.version)
	if t.cfg.FaultColdLatency > 0 {
		time.Sleep(t.cfg.FaultColdLatency)
	}
	if err := t.cold.WriteHistory(ctx, snap.pending); err != nil {
		return false, err
	}
	snap.state.FlushedMs = nowMs()
	if err := t.cold.WriteUserState(ctx, snap.state); err != nil {
		return false, err
	}
	evicted, err := evictScript.Run(ctx, t.hot.rdb, k.userKeys(user), snap.sid, snap.version, snap.seen, snap.pendingEnd).Int64()
	if err != nil {
		return false, fmt.Errorf("evicting %s: %w", user, err)
	}
	t.log.Debug("offload: cold state written", "user", user, "version", snap.version, "evicted", evicted == 1)
	if evicted == 1 {
		t.offloads.Add(1)
		for field := range snap.state.Watermarks {
			if err := t.hot.rdb.ZRem(ctx, k.pendingKey(field), user).Err(); err != nil {
				return true, fmt.Errorf("dropping %s from the pending set of %s: %w", user, field, err)
			}
		}
		seen, _ := strconv.ParseInt(snap.seen, 10, 64)
		if _, err := dropActivityScript.Run(ctx, t.hot.rdb, []string{k.ActivityKey(user)}, user, seen).Result(); err != nil {
			return true, fmt.Errorf("dropping activity of %s: %w", user, err)
		}
	}
	return evicted == 1, nil
}

type snapshot struct {
	epoch      string
	sid        string
	version    string
	seen       string
	pendingEnd string
	pending    []HistoryEvent
	state      UserState
}

func parseSnapshot(user string, res []string) (snapshot, error) {
	s := snapshot{state: UserState{UserID: user, ArmCounts: map[string][]int64{}, Watermarks: map[string]int64{}}}
	part := 0
	var meta, stats []string
	for _, v := range res {
		if v == "|" {
			part++
			continue
		}
		switch part {
		case 0:
			meta = append(meta, v)
		case 1:
			e, err := decodeEvent(user, v)
			if err != nil {
				return s, err
			}
			s.pending = append(s.pending, e)
		default:
			stats = append(stats, v)
		}
	}
	for i := 0; i+1 < len(meta); i += 2 {
		f, v := meta[i], meta[i+1]
		switch {
		case f == "v":
			s.version = v
			s.state.Version, _ = strconv.ParseInt(v, 10, 64)
		case f == "seen":
			s.seen = v
		case f == "sid":
			s.sid = v
		case f == "ep":
			s.epoch = v
		case f == "pe":
			s.pendingEnd = v
		case strings.HasPrefix(f, "w:"):
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return s, fmt.Errorf("store: watermark %s of %s is %q", f, user, v)
			}
			s.state.Watermarks[f[2:]] = n
		}
	}
	for i := 0; i+1 < len(stats); i += 2 {
		arm, ty, n, err := parseUserArmField(stats[i], stats[i+1])
		if err != nil {
			return s, fmt.Errorf("user %s: %w", user, err)
		}
		c := s.state.ArmCounts[arm]
		if c == nil {
			c = make([]int64, NumEventTypes)
			s.state.ArmCounts[arm] = c
		}
		c[ty] = n
	}
	return s, nil
}

// Sweep offloads up to limit users idle longer than the idle timeout from
// each activity shard. Any number of sweepers may run: offloads of the same
// user by two of them write the same cold state and evict once.
func (t *Tier) Sweep(ctx context.Context, limit int) (offloaded int, err error) {
	epoch, err := t.hot.currentEpoch(ctx)
	if err != nil {
		return 0, err
	}
	if epoch == "" {
		// Lost and not recovered yet: ingest recovers it; sweep after.
		return 0, nil
	}
	cutoff := nowMs() - t.cfg.IdleTimeout.Milliseconds()
	var errs []error
	for n := 0; n < ActivityShards; n++ {
		users, err := t.hot.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: t.hot.keys.activityShardKey(n), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoff, 10),
			Offset: 0, Count: int64(limit),
		}).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading activity shard %d: %w", n, err))
			continue
		}
		for _, u := range users {
			evicted, err := t.Offload(ctx, u, epoch)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if evicted {
				offloaded++
			}
		}
	}
	return offloaded, errors.Join(errs...)
}

// RunSweeper sweeps every interval, and snapshots the arm counts every
// snapshotEvery (0: never), until ctx ends. Errors (a cold tier that is
// down) are logged and the work is tried again next time.
func (t *Tier) RunSweeper(ctx context.Context, interval, snapshotEvery time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastSnapshot time.Time
	for {
		n, err := t.Sweep(ctx, 1000)
		if err != nil && ctx.Err() == nil {
			t.log.Warn("sweep", "offloaded", n, "err", err)
		} else if n > 0 {
			t.log.Info("sweep", "offloaded", n)
		}
		if snapshotEvery > 0 && time.Since(lastSnapshot) >= snapshotEvery {
			if s, err := t.Snapshot(ctx); err != nil {
				if ctx.Err() == nil {
					t.log.Warn("snapshot", "err", err)
				}
			} else {
				lastSnapshot = time.Now()
				t.log.Info("snapshot", "id", s.ID, "replay_from", s.ReplayFrom)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Snapshot writes the arm counts of every shard, with their watermarks,
// to the cold tier, and where a replay after restoring them must start for
// each partition: after the last offset applied to every shard, and not
// after the oldest event of a hot user not yet in the cold tier. One
// snapshot at a time across instances.
func (t *Tier) Snapshot(ctx context.Context) (Snapshot, error) {
	k := t.hot.keys
	l, got, err := acquireLease(ctx, t.hot.rdb, k.Prefix+":snapshot-lock", LeaseTTL)
	if err != nil || !got {
		return Snapshot{}, errors.Join(err, errors.New("store: another snapshot is running"))
	}
	defer l.release(ctx)
	epoch, err := t.hot.currentEpoch(ctx)
	if err != nil || epoch == "" {
		return Snapshot{}, errors.Join(err, errors.New("store: no snapshot while the hot tier is not recovered"))
	}
	parts, err := t.hot.rdb.SMembers(ctx, k.Prefix+":parts").Result()
	if err != nil {
		return Snapshot{}, err
	}
	// Read before the shards: the shards then hold at least this much.
	replay := map[string]int64{}
	for _, field := range parts {
		topic, pstr, _ := strings.Cut(field, "/")
		partition, _ := strconv.Atoi(pstr)
		from := int64(0)
		if o, ok, err := t.hot.PartitionApplied(ctx, topic, partition, epoch); err != nil {
			return Snapshot{}, err
		} else if ok {
			from = o + 1
		}
		oldest, err := t.hot.rdb.ZRangeWithScores(ctx, k.pendingKey(field), 0, 0).Result()
		if err != nil {
			return Snapshot{}, err
		}
		if len(oldest) == 1 && int64(oldest[0].Score) < from {
			from = int64(oldest[0].Score)
		}
		replay[field] = from
	}
	s := Snapshot{ID: time.Now().UnixMicro(), Epoch: epoch, Shards: k.Shards, TakenMs: nowMs(), ReplayFrom: replay}
	for shard := 0; shard < k.Shards; shard++ {
		sh, err := t.hot.SnapshotShard(ctx, shard, epoch)
		if err != nil {
			return Snapshot{}, err
		}
		if err := t.cold.WriteShardSnapshot(ctx, s.ID, sh); err != nil {
			return Snapshot{}, err
		}
	}
	return s, t.cold.CompleteSnapshot(ctx, s)
}

// Recover starts a new epoch after the hot tier lost its state (see
// Hot.Recover), first restoring the latest snapshot of the arm counts and
// where each partition's replay must start. Writers then replay each
// partition from PartitionApplied + 1, or from the earliest record when no
// snapshot covers it.
func (t *Tier) Recover(ctx context.Context, seen string) (string, error) {
	return t.hot.recoverWith(ctx, seen, func(epoch string) error {
		s, err := t.cold.LatestSnapshot(ctx)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if s.Shards != t.hot.keys.Shards {
			return fmt.Errorf("store: snapshot %d has %d shards, the hot tier %d", s.ID, s.Shards, t.hot.keys.Shards)
		}
		for shard := 0; shard < s.Shards; shard++ {
			sh, err := t.cold.ReadShardSnapshot(ctx, s.ID, shard)
			if err != nil {
				return err
			}
			if err := t.hot.restoreShard(ctx, sh, epoch); err != nil {
				return fmt.Errorf("restoring shard %d of snapshot %d: %w", shard, s.ID, err)
			}
		}
		for field, from := range s.ReplayFrom {
			topic, pstr, _ := strings.Cut(field, "/")
			partition, _ := strconv.Atoi(pstr)
			if err := t.hot.MarkPartitionApplied(ctx, topic, partition, from-1, epoch); err != nil {
				return err
			}
		}
		t.log.Warn("restored arm snapshot", "id", s.ID, "taken_ms", s.TakenMs, "replay_from", s.ReplayFrom)
		return nil
	})
}

// LatestSnapshot returns the newest complete arm snapshot, or ErrNotFound.
func (t *Tier) LatestSnapshot(ctx context.Context) (Snapshot, error) {
	return t.cold.LatestSnapshot(ctx)
}

// ColdState returns a user's state as last offloaded, or ErrNotFound.
func (t *Tier) ColdState(ctx context.Context, user string) (UserState, error) {
	return t.cold.ReadUserState(ctx, user)
}

// UserHistory returns a hot user's recent history, newest first, each
// event once: an event a producer wrote to the topic twice (a retried
// send) is in the hot list twice but, as in the cold tier's history, one
// event by (time, event id).
func (t *Tier) UserHistory(ctx context.Context, user string) ([]HistoryEvent, error) {
	vals, err := t.hot.rdb.LRange(ctx, t.hot.keys.userKey(user, "h"), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	type key struct {
		ms int64
		id string
	}
	out, seen := make([]HistoryEvent, 0, len(vals)), make(map[key]bool, len(vals))
	for _, v := range vals {
		e, err := decodeEvent(user, v)
		if err != nil {
			return nil, err
		}
		if k := (key{e.EventTimeMs, e.EventID}); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// UserArmCounts returns a hot user's own counts per arm ("context\x1fitem").
func (t *Tier) UserArmCounts(ctx context.Context, user string) (map[string][]int64, error) {
	vals, err := t.hot.rdb.HGetAll(ctx, t.hot.keys.userKey(user, "s")).Result()
	if err != nil {
		return nil, err
	}
	flat := make([]string, 0, 2*len(vals))
	for f, v := range vals {
		flat = append(flat, f, v)
	}
	s, err := parseSnapshot(user, append([]string{"|", "|"}, flat...))
	return s.state.ArmCounts, err
}
