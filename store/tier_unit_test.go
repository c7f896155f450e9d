package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/state"
)

// Unit tests of the tiering over in-memory tiers, with the clock injected:
// no server, no sleeping out idle timeouts.

func newUnitTier(t *testing.T, cfg store.TierConfig) (*store.Tier, *fakeHot, *fakeCold, *clock) {
	t.Helper()
	h, c, clk := newFakeHot(4), newFakeCold(), newClock()
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	tier, err := store.NewTier(h, c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tier, h, c, clk
}

func userEvent(user string, off int64, item string, typ int32) state.UserEvent {
	return state.UserEvent{Offset: off, Event: state.HistoryEvent{
		UserID: user, EventID: "e" + item + string(rune('0'+off)), ItemID: item, Context: "home", Type: typ, EventTimeMs: 1000 + off,
	}}
}

func TestTierConfig(t *testing.T) {
	if err := store.DefaultTierConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.NewTier(nil, newFakeCold(), store.TierConfig{}); err == nil {
		t.Fatal("no hot tier: accepted")
	}
	if _, err := store.NewTier(newFakeHot(1), newFakeCold(), store.TierConfig{HistoryCap: -1}); err == nil {
		t.Fatal("negative history cap: accepted")
	}
	if err := (store.SweeperConfig{Interval: 0, Limit: 1}).Validate(); err == nil {
		t.Fatal("zero sweep interval: accepted")
	}
	if _, err := store.NewSweeper(nil, store.DefaultSweeperConfig()); err == nil {
		t.Fatal("sweeper without a tier: accepted")
	}
}

// A session starts from the user's cold state, once; a user already hot is
// not loaded again.
func TestEnsureLoadedInstallsTheColdState(t *testing.T) {
	tier, h, c, _ := newUnitTier(t, store.TierConfig{})
	ctx := context.Background()
	c.states["back"] = state.UserState{UserID: "back", Version: 7, ArmCounts: map[string][]int64{"home\x1fa": {3, 1, 0, 0, 0}}, Watermarks: map[string]int64{"ev/0": 41}}
	if err := tier.EnsureLoaded(ctx, []string{"back", "new"}, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := tier.EnsureLoaded(ctx, []string{"back", "new"}, "e1"); err != nil {
		t.Fatal(err)
	}
	if st := tier.Stats(); st.SessionLoads != 2 {
		t.Fatalf("%d loads, want 2", st.SessionLoads)
	}
	s := h.sessions["back"]
	if s.version != 7 || s.st.Watermarks["ev/0"] != 41 || s.st.ArmCounts["home\x1fa"][1] != 1 {
		t.Fatalf("installed %+v", s)
	}
	// The user's watermark skips what the cold state holds already.
	notLoaded, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"back": {userEvent("back", 41, "a", 2), userEvent("back", 42, "a", 2)}})
	if err != nil || len(notLoaded) > 0 {
		t.Fatal(notLoaded, err)
	}
	if got := h.sessions["back"].st.ArmCounts["home\x1fa"][1]; got != 2 {
		t.Fatalf("%d clicks, want 2 (offset 41 was in the cold state)", got)
	}
	if len(h.locks) != 0 {
		t.Fatalf("locks left: %v", h.locks)
	}
}

// Another process loading the same session is waited for, not raced; one
// that never finishes is an error after LoadWait.
func TestEnsureLoadedWaitsForAnotherLoader(t *testing.T) {
	tier, h, _, _ := newUnitTier(t, store.TierConfig{})
	h.otherLoader = 3
	if err := tier.EnsureLoaded(context.Background(), []string{"u"}, "e1"); err != nil {
		t.Fatal(err)
	}
	if tier.Stats().SessionLoads != 0 || h.sessions["u"].sid != "other" {
		t.Fatal("loaded the session although another loader did")
	}

	clk := newClock()
	ticking := func() time.Time { clk.advance(time.Second); return clk.Now() }
	tier, h, _, _ = newUnitTier(t, store.TierConfig{LoadWait: 3 * time.Second, Now: ticking})
	h.locks["u"] = "someone"
	err := tier.EnsureLoaded(context.Background(), []string{"u"}, "e1")
	if err == nil || !strings.Contains(err.Error(), "still loading elsewhere") {
		t.Fatalf("err %v, want a load-wait error", err)
	}
}

// A cold tier that cannot be read fails the load and releases the lock, so
// the next attempt is not held up.
func TestEnsureLoadedReleasesTheLockOnFailure(t *testing.T) {
	tier, h, c, _ := newUnitTier(t, store.TierConfig{})
	c.readErr = errors.New("cold tier down")
	if err := tier.EnsureLoaded(context.Background(), []string{"u"}, "e1"); !errors.Is(err, c.readErr) {
		t.Fatalf("err %v", err)
	}
	if len(h.locks) != 0 {
		t.Fatalf("lock kept after a failed load: %v", h.locks)
	}
	c.readErr = nil
	if err := tier.EnsureLoaded(context.Background(), []string{"u"}, "e1"); err != nil {
		t.Fatal(err)
	}
}

// A loader whose lock expired before its install reads the cold state again
// under a new lock, rather than installing what it read.
func TestEnsureLoadedRetriesWhenTheLockExpired(t *testing.T) {
	tier, h, c, _ := newUnitTier(t, store.TierConfig{})
	c.states["u"] = state.UserState{UserID: "u", Version: 4, Watermarks: map[string]int64{"ev/0": 40}}
	h.lockExpires = 2
	if err := tier.EnsureLoaded(context.Background(), []string{"u"}, "e1"); err != nil {
		t.Fatal(err)
	}
	s, ok := h.sessions["u"]
	if !ok || s.version != 4 || h.lockExpires != 0 || len(h.locks) != 0 {
		t.Fatalf("session %+v (installed %v), %d expiries left, locks %v", s, ok, h.lockExpires, h.locks)
	}
}

// A session of an older epoch is dropped and reported not loaded: the
// caller loads it again and the events count in the new epoch.
func TestApplyDropsStaleSessions(t *testing.T) {
	tier, h, _, _ := newUnitTier(t, store.TierConfig{})
	ctx := context.Background()
	h.sessions["u"] = &fakeSession{epoch: "old", st: state.UserState{UserID: "u", Watermarks: map[string]int64{"ev/0": 99}}}
	notLoaded, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"u": {userEvent("u", 5, "a", 1)}})
	if err != nil || len(notLoaded) != 1 {
		t.Fatalf("not loaded %v, %v", notLoaded, err)
	}
	if _, ok := h.sessions["u"]; ok {
		t.Fatal("the stale session was kept")
	}
}

func TestOffload(t *testing.T) {
	ctx := context.Background()
	load := func(t *testing.T) (*store.Tier, *fakeHot, *fakeCold, *clock) {
		tier, h, c, clk := newUnitTier(t, store.TierConfig{})
		if err := tier.EnsureLoaded(ctx, []string{"u"}, "e1"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"u": {userEvent("u", 1, "a", 1), userEvent("u", 2, "a", 2)}}); err != nil {
			t.Fatal(err)
		}
		return tier, h, c, clk
	}
	t.Run("flushed and evicted", func(t *testing.T) {
		tier, h, c, clk := load(t)
		clk.advance(time.Minute)
		evicted, err := tier.Offload(ctx, "u", "e1")
		if err != nil || !evicted {
			t.Fatalf("evicted %v, %v", evicted, err)
		}
		st := c.states["u"]
		if st.Version != 2 || st.ArmCounts["home\x1fa"][1] != 1 || st.Watermarks["ev/0"] != 2 || st.FlushedMs != clk.Now().UnixMilli() {
			t.Fatalf("cold state %+v", st)
		}
		if len(c.history["u"]) != 2 || len(h.sessions) != 0 || tier.Stats().Offloads != 1 {
			t.Fatalf("history %v, sessions %v", c.history["u"], h.sessions)
		}
		got, err := tier.ColdState(ctx, "u")
		if err != nil || got.Version != 2 {
			t.Fatalf("cold state read back %+v, %v", got, err)
		}
	})
	t.Run("an event during the flush keeps the user hot", func(t *testing.T) {
		tier, h, c, _ := load(t)
		h.evictRefuses = true
		evicted, err := tier.Offload(ctx, "u", "e1")
		if err != nil || evicted {
			t.Fatalf("evicted %v, %v", evicted, err)
		}
		if len(c.history["u"]) != 2 || len(h.sessions["u"].pending) != 0 || tier.Stats().Offloads != 0 {
			t.Fatal("the flushed events were not dropped from the pending list, or counted as an offload")
		}
	})
	t.Run("not hot: only the activity entry is dropped", func(t *testing.T) {
		tier, h, c, _ := newUnitTier(t, store.TierConfig{})
		h.activity["ghost"] = 1
		if evicted, err := tier.Offload(ctx, "ghost", "e1"); err != nil || !evicted {
			t.Fatalf("evicted %v, %v", evicted, err)
		}
		if _, ok := h.activity["ghost"]; ok || c.writes != 0 {
			t.Fatal("activity kept, or the cold tier written")
		}
	})
	t.Run("a session of another epoch is dropped unflushed", func(t *testing.T) {
		tier, h, c, _ := load(t)
		h.sessions["u"].epoch = "old"
		if evicted, err := tier.Offload(ctx, "u", "e1"); err != nil || !evicted {
			t.Fatalf("evicted %v, %v", evicted, err)
		}
		if c.writes != 0 {
			t.Fatal("a stale session was flushed to the cold tier")
		}
	})
	t.Run("the epoch changes during the offload: nothing written", func(t *testing.T) {
		tier, h, c, _ := load(t)
		h.epochChanges = true
		if _, err := tier.Offload(ctx, "u", "e1"); err == nil {
			t.Fatal("no error")
		}
		if c.writes != 0 || len(c.states) != 0 {
			t.Fatal("the cold tier was written after the hot tier's epoch changed")
		}
	})
	t.Run("no offload while not recovered", func(t *testing.T) {
		tier, _, _, _ := load(t)
		if _, err := tier.Offload(ctx, "u", ""); err == nil {
			t.Fatal("offloaded without an epoch")
		}
	})
	t.Run("cold tier down: the user stays hot", func(t *testing.T) {
		tier, h, c, _ := load(t)
		c.writeErr = errors.New("down")
		if _, err := tier.Offload(ctx, "u", "e1"); !errors.Is(err, c.writeErr) {
			t.Fatalf("err %v", err)
		}
		if _, ok := h.sessions["u"]; !ok {
			t.Fatal("evicted although the flush failed")
		}
	})
}

// The sweep offloads exactly the users idle longer than the idle timeout,
// by the injected clock; requests (Sessions) keep a user active.
func TestSweepByIdleTimeout(t *testing.T) {
	tier, h, _, clk := newUnitTier(t, store.TierConfig{IdleTimeout: 30 * time.Minute})
	ctx := context.Background()
	for _, u := range []string{"reader", "idle", "writer"} {
		if err := tier.EnsureLoaded(ctx, []string{u}, "e1"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{u: {userEvent(u, 1, "a", 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	clk.advance(20 * time.Minute)
	if _, err := tier.Sessions(ctx, []string{"reader"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"writer": {userEvent("writer", 2, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	clk.advance(11 * time.Minute)
	n, err := tier.Sweep(ctx, 100)
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want only idle", n, err)
	}
	if _, ok := h.sessions["idle"]; ok {
		t.Fatal("idle user still hot")
	}
	if _, ok := h.sessions["reader"]; !ok {
		t.Fatal("a user who keeps reading was offloaded")
	}
	h.epoch = ""
	if n, err := tier.Sweep(ctx, 100); n != 0 || err != nil {
		t.Fatalf("swept %d, %v while the hot tier is not recovered", n, err)
	}
}

// A flush the cold tier refuses for good keeps the user hot, is counted,
// and goes through once the cause is gone; a transient failure is not
// counted as a refusal.
func TestSweepCountsColdRefusals(t *testing.T) {
	tier, h, c, clk := newUnitTier(t, store.TierConfig{IdleTimeout: time.Minute})
	ctx := context.Background()
	if err := tier.EnsureLoaded(ctx, []string{"u"}, "e1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"u": {userEvent("u", 1, "a", 1)}}); err != nil {
		t.Fatal(err)
	}
	clk.advance(2 * time.Minute)
	for _, fault := range []error{errors.New("timeout"), fmt.Errorf("writing history of u: %w: unauthorized", state.ErrRefused)} {
		c.writeErr = fault
		if n, err := tier.Sweep(ctx, 100); n != 0 || !errors.Is(err, fault) {
			t.Fatalf("swept %d, %v; want nothing and %v", n, err, fault)
		}
		if _, ok := h.sessions["u"]; !ok {
			t.Fatalf("%v: the user was evicted", fault)
		}
	}
	if got := tier.Stats().ColdRefusals; got != 1 {
		t.Fatalf("%d refusals counted, want 1", got)
	}
	c.writeErr = nil
	if n, err := tier.Sweep(ctx, 100); n != 1 || err != nil {
		t.Fatalf("swept %d, %v once the cold tier accepts", n, err)
	}
}

// A user who is never idle is flushed without eviction once the pending
// events pass the bound in number or in age, in chunks of FlushChunk, and
// stays hot; the flush index forgets a user with nothing pending.
func TestSweepFlushesActiveUsers(t *testing.T) {
	tier, h, c, clk := newUnitTier(t, store.TierConfig{FlushPending: 5, FlushAfter: time.Minute, FlushChunk: 2})
	ctx := context.Background()
	if err := tier.EnsureLoaded(ctx, []string{"bot"}, "e1"); err != nil {
		t.Fatal(err)
	}
	apply := func(from, n int64) {
		t.Helper()
		var evs []state.UserEvent
		for off := from; off < from+n; off++ {
			evs = append(evs, userEvent("bot", off, "a", 2))
		}
		if _, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"bot": evs}); err != nil {
			t.Fatal(err)
		}
	}
	sweep := func() {
		t.Helper()
		if n, err := tier.Sweep(ctx, 100); err != nil || n != 0 {
			t.Fatalf("swept %d, %v: the active user was evicted", n, err)
		}
	}
	// Four events, a second old: under both bounds, nothing written.
	apply(1, 4)
	clk.advance(time.Second)
	sweep()
	if c.writes != 0 || tier.Stats().Flushes != 0 {
		t.Fatalf("flushed under the bounds: %d cold writes", c.writes)
	}
	// The fifth passes the bound in number: flushed in three chunks.
	apply(5, 1)
	sweep()
	if got := c.states["bot"]; got.ArmCounts["home\x1fa"][1] != 5 || got.Watermarks["ev/0"] != 5 || len(c.history["bot"]) != 5 {
		t.Fatalf("cold state %+v, %d events of history", got, len(c.history["bot"]))
	}
	if s := h.sessions["bot"]; s == nil || len(s.pending) != 0 || h.chunkReads != 3 {
		t.Fatalf("session %+v after a flush, %d chunk reads (want 3 of at most 2)", s, h.chunkReads)
	}
	if _, due := h.due["bot"]; due || tier.Stats().Flushes != 1 {
		t.Fatalf("still due with nothing pending, or %d flushes", tier.Stats().Flushes)
	}
	// One more event: due by age only, a minute after it arrived.
	apply(6, 1)
	clk.advance(30 * time.Second)
	sweep()
	if len(c.history["bot"]) != 5 {
		t.Fatal("flushed before the age bound")
	}
	clk.advance(31 * time.Second)
	sweep()
	if got := c.states["bot"]; len(c.history["bot"]) != 6 || got.Watermarks["ev/0"] != 6 || got.FlushedMs != clk.Now().UnixMilli() {
		t.Fatalf("cold state %+v, %d events of history after the age bound", got, len(c.history["bot"]))
	}
	if _, ok := h.sessions["bot"]; !ok {
		t.Fatal("a flush evicted the user")
	}
}

func TestSnapshotAndRecover(t *testing.T) {
	ctx := context.Background()
	tier, h, c, clk := newUnitTier(t, store.TierConfig{})
	h.arms[1] = state.ShardSnapshot{Shard: 1, Watermarks: map[string]int64{"ev/0": 9}, Arms: map[string][]int64{"home\x1fa": {5, 2, 0, 0, 0, 77}}}
	h.parts["ev/0"] = 9
	s, err := tier.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != 1 || s.TakenMs != clk.Now().UnixMilli() || s.Shards != 4 || s.ReplayFrom["ev/0"] != 10 || len(c.shards[s.ID]) != 4 {
		t.Fatalf("snapshot %+v with %d shards written", s, len(c.shards[s.ID]))
	}
	if latest, err := tier.LatestSnapshot(ctx); err != nil || latest.ID != s.ID {
		t.Fatalf("latest %+v, %v", latest, err)
	}
	h.snapshotBusy = true
	if _, err := tier.Snapshot(ctx); err == nil {
		t.Fatal("two snapshots at once")
	}
	h.snapshotBusy = false

	// The hot tier loses everything; recovery restores the snapshot and
	// where the partition's replay must start.
	h.arms, h.parts, h.epoch = map[int]state.ShardSnapshot{}, map[string]int64{}, ""
	if _, err := tier.Snapshot(ctx); err == nil {
		t.Fatal("a snapshot of a hot tier that is not recovered")
	}
	epoch, err := tier.Recover(ctx, "")
	if err != nil || epoch == "" {
		t.Fatal(epoch, err)
	}
	if got := h.arms[1].Arms["home\x1fa"]; len(got) != 6 || got[1] != 2 {
		t.Fatalf("restored arm %v", got)
	}
	if h.parts["ev/0"] != 9 {
		t.Fatalf("partition applied up to %d, want 9 (replay from 10)", h.parts["ev/0"])
	}

	// A snapshot of another shard count is refused, not half restored.
	c.snapshots = append(c.snapshots, state.Snapshot{ID: 1, Shards: 8})
	h.epoch = ""
	if _, err := tier.Recover(ctx, ""); err == nil || !strings.Contains(err.Error(), "shards") {
		t.Fatalf("err %v, want a shard-count mismatch", err)
	}
}

// Recovering a hot tier with no snapshot starts a new, empty epoch.
func TestRecoverWithoutSnapshot(t *testing.T) {
	tier, h, _, _ := newUnitTier(t, store.TierConfig{})
	h.epoch = ""
	epoch, err := tier.Recover(context.Background(), "")
	if err != nil || epoch == "" || h.recoveries != 1 {
		t.Fatal(epoch, err, h.recoveries)
	}
	if e, _ := tier.Epoch(context.Background()); e != epoch {
		t.Fatalf("epoch %q after recovering %q", e, epoch)
	}
}

// The sweeper sweeps every interval and snapshots every SnapshotEvery, in
// virtual time, until its context ends.
func TestSweeperRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newFakeHot(2), newFakeCold()
		tier, err := store.NewTier(h, c, store.TierConfig{IdleTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := tier.EnsureLoaded(ctx, []string{"u"}, "e1"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tier.ApplyUserEvents(ctx, "ev", 0, "e1", map[string][]state.UserEvent{"u": {userEvent("u", 1, "a", 1)}}); err != nil {
			t.Fatal(err)
		}
		sw, err := store.NewSweeper(tier, store.SweeperConfig{Interval: 10 * time.Second, SnapshotEvery: time.Minute, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- sw.Run(ctx) }()
		synctest.Wait()
		if n := c.snapshotCount(); n != 1 {
			t.Fatalf("%d snapshots at start, want 1", n)
		}
		time.Sleep(50 * time.Second)
		synctest.Wait()
		if hot, n := h.isHot("u"), c.snapshotCount(); hot || n != 1 {
			t.Fatalf("after 50 s: user hot %v, %d snapshots; want offloaded, 1", hot, n)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if n := c.snapshotCount(); n != 2 {
			t.Fatalf("after 70 s: %d snapshots, want 2", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
