package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/cold"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

type env struct {
	epoch   string
	rdb     redis.UniversalClient
	hot     *hot.Hot
	cold    *cold.Cold
	session *gocql.Session
	tier    *store.Tier
}

func newEnv(t *testing.T, cfg store.TierConfig) *env {
	t.Helper()
	return newEnvWith(t, cfg, nil)
}

// newEnvWith is newEnv with the cold tier wrapped by wrap (a fault).
func newEnvWith(t *testing.T, cfg store.TierConfig, wrap func(store.ColdTier) store.ColdTier) *env {
	t.Helper()
	rdb := stacktest.Redis(t)
	prefix := stacktest.UniqueName("it")
	cold, session := stacktest.OpenCold(t, stacktest.UniqueName("it"), prefix, true)
	hot, err := hot.New(rdb, hot.Keys{Prefix: prefix, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	var ct store.ColdTier = cold
	if wrap != nil {
		ct = wrap(cold)
	}
	tier, err := store.NewTier(hot, ct, cfg)
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := hot.Recover(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return &env{epoch: epoch, rdb: rdb, hot: hot, cold: cold, session: session, tier: tier}
}

func event(user string, i int, typ schemas.EventType) state.UserEvent {
	return state.UserEvent{Offset: int64(i), Event: state.HistoryEvent{
		UserID: user, EventID: "e-" + strconv.Itoa(i), ItemID: "sku-" + strconv.Itoa(i%3), Context: "home",
		Type: int32(typ), EventTimeMs: int64(1_767_225_600_000 + i),
	}}
}

func (e *env) apply(t *testing.T, ctx context.Context, partition int, evs ...state.UserEvent) {
	t.Helper()
	byUser := map[string][]state.UserEvent{}
	users := []string{}
	for _, ev := range evs {
		if byUser[ev.Event.UserID] == nil {
			users = append(users, ev.Event.UserID)
		}
		byUser[ev.Event.UserID] = append(byUser[ev.Event.UserID], ev)
	}
	if err := e.tier.EnsureLoaded(ctx, users, e.epoch); err != nil {
		t.Fatal(err)
	}
	notLoaded, _, err := e.tier.ApplyUserEvents(ctx, "interactions", partition, e.epoch, byUser)
	if err != nil || len(notLoaded) > 0 {
		t.Fatalf("apply: %v, not loaded %v", err, notLoaded)
	}
}

// An event a producer wrote twice (a retried send: the same event at two
// offsets) counts once and is in the history once, hot and after an
// offload and reload alike; a redelivery of either offset, before and after
// the reload, makes the same decision (the window travels with the user's
// state). By offset alone (the window off) it counts twice.
func TestAnEventAtTwoOffsetsCountsOnce(t *testing.T) {
	for _, c := range []struct {
		name   string
		noDup  bool
		clicks int64
		dups   []int64
	}{{"by event id", false, 1, []int64{2}}, {"by offset alone", true, 2, nil}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, store.TierConfig{IdleTimeout: time.Millisecond, NoDedup: c.noDup})
			ctx := context.Background()
			const user = "u-dup"
			first, again := event(user, 1, schemas.Click), event(user, 1, schemas.Click)
			again.Offset = 2
			all := []state.UserEvent{event(user, 0, schemas.Impression), first, again}
			apply := func(when string) {
				t.Helper()
				if err := e.tier.EnsureLoaded(ctx, []string{user}, e.epoch); err != nil {
					t.Fatal(err)
				}
				_, dups, err := e.tier.ApplyUserEvents(ctx, "interactions", 0, e.epoch, map[string][]state.UserEvent{user: all})
				if err != nil || !slices.Equal(dups, c.dups) {
					t.Fatalf("%s: duplicates %v, %v; want %v", when, dups, err, c.dups)
				}
				counts, err := e.hot.UserArmCounts(ctx, user)
				if err != nil || counts["home\x1fsku-1"][state.TypeIndex(schemas.Click)] != c.clicks {
					t.Fatalf("%s: counts %v, %v; want %d clicks on sku-1", when, counts, err, c.clicks)
				}
				hist, err := e.hot.UserHistory(ctx, user)
				if err != nil || len(hist) != 2 || hist[0].EventID != "e-1" || hist[1].EventID != "e-0" {
					t.Fatalf("%s: history %+v, %v; want e-1, e-0", when, hist, err)
				}
			}
			apply("first delivery")
			apply("redelivered")
			time.Sleep(5 * time.Millisecond)
			if n, err := e.tier.Sweep(ctx, 100); err != nil || n != 1 {
				t.Fatalf("sweep offloaded %d, err %v; want 1", n, err)
			}
			apply("redelivered after a reload")
		})
	}
}

// A user's state survives offload and reload exactly: counts, history, and
// the watermark, so events redelivered after the reload are not counted
// again.
func TestOffloadReloadKeepsStateAndWatermark(t *testing.T) {
	e := newEnv(t, store.TierConfig{IdleTimeout: time.Millisecond})
	ctx := context.Background()
	const user = "u-1"
	var evs []state.UserEvent
	for i := 0; i < 10; i++ {
		evs = append(evs, event(user, i, schemas.Impression))
	}
	evs = append(evs, event(user, 10, schemas.Click))
	e.apply(t, ctx, 0, evs...)
	before, _ := e.hot.UserArmCounts(ctx, user)
	histBefore, _ := e.hot.UserHistory(ctx, user)

	time.Sleep(5 * time.Millisecond)
	n, err := e.tier.Sweep(ctx, 100)
	if err != nil || n != 1 {
		t.Fatalf("sweep offloaded %d, err %v; want 1", n, err)
	}
	if h, _ := e.hot.UserHistory(ctx, user); len(h) != 0 {
		t.Fatalf("user still hot after offload: %d history entries", len(h))
	}
	st, err := e.cold.ReadUserState(ctx, user)
	if err != nil || st.Version != 1 || st.Watermarks["interactions/0"] != 10 {
		t.Fatalf("cold state %+v, %v", st, err)
	}
	rows, err := e.cold.RecentHistory(ctx, user, 100)
	if err != nil || len(rows) != 11 {
		t.Fatalf("cold history: %d rows, %v; want 11", len(rows), err)
	}

	// Redelivery of the same offsets after the reload changes nothing.
	e.apply(t, ctx, 0, evs...)
	after, _ := e.hot.UserArmCounts(ctx, user)
	histAfter, _ := e.hot.UserHistory(ctx, user)
	if fmt.Sprint(after) != fmt.Sprint(before) || len(histAfter) != len(histBefore) {
		t.Fatalf("after reload and redelivery: counts %v history %d; want %v and %d", after, len(histAfter), before, len(histBefore))
	}
	for i := range histBefore {
		if histAfter[i] != histBefore[i] {
			t.Fatalf("history entry %d: %+v, want %+v", i, histAfter[i], histBefore[i])
		}
	}
	// New events count on top.
	e.apply(t, ctx, 0, event(user, 11, schemas.Click))
	final, _ := e.hot.UserArmCounts(ctx, user)
	arm := "home\x1fsku-2"
	if final[arm][1] != before[arm][1]+1 {
		t.Fatalf("click on %q: %v, want one more than %v", arm, final[arm], before[arm])
	}
}

// Many goroutines starting the same session at once install it once: the
// user's cold counts are not added twice.
func TestConcurrentSessionLoadOnce(t *testing.T) {
	e := newEnv(t, store.TierConfig{})
	ctx := context.Background()
	const user = "u-concurrent"
	if err := e.cold.WriteUserState(ctx, state.UserState{
		UserID: user, Version: 7, ArmCounts: map[string][]int64{"home\x1fsku-1": {5, 2, 0, 0, 1}},
		Watermarks: map[string]int64{"interactions/3": 41},
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.tier.EnsureLoaded(ctx, []string{user}, e.epoch)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	counts, _ := e.hot.UserArmCounts(ctx, user)
	if !slices.Equal(counts["home\x1fsku-1"], []int64{5, 2, 0, 0, 1}) {
		t.Fatalf("counts after 32 concurrent loads: %v", counts)
	}
	// The restored watermark holds: offset 41 is old, 42 is new.
	byUser := map[string][]state.UserEvent{user: {event(user, 41, schemas.Click), event(user, 42, schemas.Click)}}
	byUser[user][0].Event.ItemID, byUser[user][1].Event.ItemID = "sku-1", "sku-1"
	if _, _, err := e.tier.ApplyUserEvents(ctx, "interactions", 3, e.epoch, byUser); err != nil {
		t.Fatal(err)
	}
	counts, _ = e.hot.UserArmCounts(ctx, user)
	if counts["home\x1fsku-1"][1] != 3 {
		t.Fatalf("clicks = %d, want 3 (2 restored + offset 42 only)", counts["home\x1fsku-1"][1])
	}
}

// An event that lands while a user is being offloaded keeps the user hot;
// nothing is lost and the next offload flushes it.
func TestOffloadRaceKeepsLateEvent(t *testing.T) {
	e := newEnvWith(t, store.TierConfig{IdleTimeout: time.Millisecond}, func(c store.ColdTier) store.ColdTier {
		return slowCold{ColdTier: c, delay: 300 * time.Millisecond}
	})
	ctx := context.Background()
	const user = "u-race"
	e.apply(t, ctx, 0, event(user, 0, schemas.Impression), event(user, 1, schemas.Click))
	time.Sleep(5 * time.Millisecond)

	done := make(chan bool)
	go func() {
		evicted, err := e.tier.Offload(ctx, user, e.epoch)
		if err != nil {
			t.Error(err)
		}
		done <- evicted
	}()
	time.Sleep(100 * time.Millisecond) // inside the injected cold latency
	e.apply(t, ctx, 0, event(user, 2, schemas.Order))
	if <-done {
		t.Fatal("user evicted although an event landed during the flush")
	}
	hist, _ := e.hot.UserHistory(ctx, user)
	if len(hist) != 3 {
		t.Fatalf("hot history has %d events, want 3", len(hist))
	}
	time.Sleep(5 * time.Millisecond)
	if evicted, err := e.tier.Offload(ctx, user, e.epoch); err != nil || !evicted {
		t.Fatalf("second offload: evicted %v, %v", evicted, err)
	}
	rows, _ := e.cold.RecentHistory(ctx, user, 10)
	st, _ := e.cold.ReadUserState(ctx, user)
	if len(rows) != 3 || st.Version != 2 || st.ArmCounts["home\x1fsku-2"][4] != 1 {
		t.Fatalf("cold after second offload: %d rows, state %+v", len(rows), st)
	}
}

// A session loaded in an old epoch (after the hot tier lost its state and
// before anyone noticed) is refused in the new epoch, dropped without a
// flush, and loaded again from the cold tier.
func TestStaleEpochSessionIsReloaded(t *testing.T) {
	e := newEnv(t, store.TierConfig{IdleTimeout: time.Millisecond})
	ctx := context.Background()
	const user = "u-stale"
	e.apply(t, ctx, 0, event(user, 0, schemas.Click))
	if evicted, err := e.tier.Offload(ctx, user, e.epoch); err != nil || !evicted {
		t.Fatalf("offload: %v %v", evicted, err)
	}
	old := e.epoch
	// The hot tier loses the user's session and the epoch; a writer that has
	// not noticed loads the session in the old epoch and applies offset 5.
	for s := 0; s < e.hot.Keys().Shards; s++ {
		e.rdb.HDel(ctx, e.hot.Keys().WatermarkKey(s), "epoch")
	}
	e.apply(t, ctx, 0, event(user, 5, schemas.Click))
	newEpoch, err := e.hot.Recover(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if newEpoch == old {
		t.Fatal("Recover after a loss kept the old epoch")
	}
	// The stale session is not flushed to the cold tier.
	if evicted, err := e.tier.Offload(ctx, user, newEpoch); err != nil || !evicted {
		t.Fatalf("offload of a stale session: %v %v", evicted, err)
	}
	st, err := e.cold.ReadUserState(ctx, user)
	if err != nil || st.Watermarks["interactions/0"] != 0 {
		t.Fatalf("cold state after dropping the stale session: %+v %v (watermark must stay 0)", st, err)
	}
	// In the new epoch, the replay of offset 5 counts again, once.
	e.epoch = newEpoch
	e.apply(t, ctx, 0, event(user, 0, schemas.Click), event(user, 5, schemas.Click))
	counts, _ := e.hot.UserArmCounts(ctx, user)
	if got := counts["home\x1fsku-0"][1] + counts["home\x1fsku-2"][1]; got != 2 {
		t.Fatalf("clicks after replay: %v (want offsets 0 and 5 once each)", counts)
	}
}

// A snapshot taken, the hot tier wiped, Recover restores the arm counts,
// the shards' watermarks and where each partition's replay starts: after
// the last offset applied everywhere, but not after a hot user's oldest
// event not yet in the cold tier.
func TestSnapshotRestore(t *testing.T) {
	e := newEnv(t, store.TierConfig{IdleTimeout: time.Hour})
	ctx := context.Background()
	keys := e.hot.Keys()
	a1, a2 := state.Arm{Context: "home", Item: "sku-1"}, state.Arm{Context: "", Item: "sku-2"}
	apply := func(last int64, deltas ...state.ArmDelta) {
		byShard := map[int][]state.ArmDelta{}
		for _, d := range deltas {
			byShard[keys.Shard(d.Arm)] = append(byShard[keys.Shard(d.Arm)], d)
		}
		wms, _, err := e.hot.Watermarks(ctx, "interactions", 0)
		if err != nil {
			t.Fatal(err)
		}
		var shards []state.ShardBatch
		for s, ds := range byShard {
			shards = append(shards, state.ShardBatch{Shard: s, Expected: wms[s], Deltas: ds})
		}
		if _, err := e.hot.Apply(ctx, "interactions", 0, last, e.epoch, shards); err != nil {
			t.Fatal(err)
		}
		if err := e.hot.MarkPartitionApplied(ctx, "interactions", 0, last, e.epoch); err != nil {
			t.Fatal(err)
		}
	}
	apply(9, state.ArmDelta{Arm: a1, Counts: state.Counts{ByType: [5]int64{10, 2}, LastEventMs: 5}},
		state.ArmDelta{Arm: a2, Counts: state.Counts{ByType: [5]int64{4, 0, 0, 0, 1}, LastEventMs: 7}})
	// A hot user whose events from offset 6 are not in the cold tier yet.
	e.apply(t, ctx, 0, event("u-hot", 6, schemas.Click))
	apply(20, state.ArmDelta{Arm: a1, Counts: state.Counts{ByType: [5]int64{1}, LastEventMs: 9}})
	want, err := e.hot.Counts(ctx, []state.Arm{a1, a2})
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.tier.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ReplayFrom["interactions/0"] != 6 {
		t.Fatalf("replay_from = %v, want interactions/0 at 6 (the hot user's pending event)", s.ReplayFrom)
	}

	// Lose everything in the hot tier.
	stacktest.DeleteKeys(t, e.rdb, keys.Prefix+":*")
	epoch, err := e.tier.Recover(ctx, e.epoch)
	if err != nil || epoch == "" || epoch == e.epoch {
		t.Fatalf("recover: %q, %v", epoch, err)
	}
	got, err := e.hot.Counts(ctx, []state.Arm{a1, a2})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored counts %v, want %v", got, want)
	}
	wms, ep, err := e.hot.Watermarks(ctx, "interactions", 0)
	if err != nil || ep != epoch || wms[keys.Shard(a1)] != 20 {
		t.Fatalf("restored watermarks %v epoch %q (want %q), %v", wms, ep, epoch, err)
	}
	from, ok, err := e.hot.PartitionApplied(ctx, "interactions", 0, epoch)
	if err != nil || !ok || from != 5 {
		t.Fatalf("partition applied = %d %v %v, want 5 (replay from 6)", from, ok, err)
	}
}

// Sessions returns a hot user's own counts, reports a user who is not hot
// without creating a session, and keeps a session it reads hot: of two
// users idle alike, only the one never read is offloaded.
func TestSessionsReadAndKeepActive(t *testing.T) {
	e := newEnv(t, store.TierConfig{IdleTimeout: 2 * time.Second})
	ctx := context.Background()
	e.apply(t, ctx, 0, event("reader", 1, schemas.Impression), event("reader", 2, schemas.Click),
		event("idle", 3, schemas.Impression))

	stats, err := e.tier.Sessions(ctx, []string{"reader", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[state.Arm]state.Counts{
		{Context: "home", Item: "sku-1"}: {ByType: [state.NumEventTypes]int64{1, 0, 0, 0, 0}},
		{Context: "home", Item: "sku-2"}: {ByType: [state.NumEventTypes]int64{0, 1, 0, 0, 0}},
	}
	if !stats[0].Loaded || fmt.Sprint(stats[0].Arms) != fmt.Sprint(want) {
		t.Fatalf("reader: %+v, want loaded with %v", stats[0], want)
	}
	if stats[1].Loaded || stats[1].Arms != nil {
		t.Fatalf("nobody: %+v, want not loaded", stats[1])
	}
	if h, _ := e.hot.UserHistory(ctx, "nobody"); len(h) != 0 {
		t.Fatalf("reading a user who is not hot created a session")
	}

	time.Sleep(1500 * time.Millisecond)
	if _, err := e.tier.Sessions(ctx, []string{"reader"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := e.tier.Sweep(ctx, 100); err != nil {
		t.Fatal(err)
	}
	stats, err = e.tier.Sessions(ctx, []string{"reader", "idle"})
	if err != nil {
		t.Fatal(err)
	}
	if !stats[0].Loaded || stats[1].Loaded {
		t.Fatalf("after the sweep: reader loaded %v (want true), idle loaded %v (want false)", stats[0].Loaded, stats[1].Loaded)
	}
}

// slowCold delays every history write, as an offload's first cold write.
type slowCold struct {
	store.ColdTier
	delay time.Duration
}

func (c slowCold) WriteHistory(ctx context.Context, events []state.HistoryEvent) error {
	time.Sleep(c.delay)
	return c.ColdTier.WriteHistory(ctx, events)
}

// Snapshots are pruned to the newest KeepSnapshots after each one, with
// their arms and shards, and so are the shards of a snapshot never
// completed (a snapshotter that died half-way).
func TestSnapshotsArePruned(t *testing.T) {
	e := newEnv(t, store.TierConfig{KeepSnapshots: 2})
	ctx := context.Background()
	arm := state.Arm{Context: "home", Item: "sku-1"}
	shard := e.hot.Keys().Shard(arm)
	wms, _, err := e.hot.Watermarks(ctx, "interactions", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.hot.Apply(ctx, "interactions", 0, 3, e.epoch, []state.ShardBatch{{Shard: shard, Expected: wms[shard],
		Deltas: []state.ArmDelta{{Arm: arm, Counts: state.Counts{ByType: [state.NumEventTypes]int64{3, 1}, LastEventMs: 1}}}}}); err != nil {
		t.Fatal(err)
	}
	orphan, err := e.cold.NextSnapshotID(ctx) // a snapshotter that died half-way
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cold.WriteShardSnapshot(ctx, orphan, state.ShardSnapshot{Shard: shard, Arms: map[string][]int64{"x": {1}}}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for range 5 {
		s, err := e.tier.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	ks, ns := e.cold.Keyspace(), e.cold.Namespace()
	listed := e.int64s(t, `SELECT id FROM `+ks+`.ns_snapshots WHERE ns = ?`, ns)
	var withShards []int64
	iter := e.session.Query(`SELECT DISTINCT ns, id FROM ` + ks + `.ns_arm_snapshot_shard`).Iter()
	var owner string
	var id int64
	for iter.Scan(&owner, &id) {
		if owner == ns {
			withShards = append(withShards, id)
		}
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	slices.Sort(withShards)
	if want := ids[3:]; !slices.Equal(listed, want) || !slices.Equal(withShards, want) {
		t.Fatalf("snapshots listed %v, with shards %v; want %v", listed, withShards, want)
	}
	for _, id := range append([]int64{orphan}, ids[:3]...) {
		if n := e.int64s(t, `SELECT COUNT(*) FROM `+ks+`.ns_arm_snapshot WHERE ns = ? AND id = ? AND shard = ?`, ns, id, shard); n[0] != 0 {
			t.Fatalf("snapshot %d keeps %d arms", id, n[0])
		}
	}
	if latest, err := e.cold.LatestSnapshot(ctx); err != nil || latest.ID != ids[4] {
		t.Fatalf("latest snapshot %d, %v; want %d", latest.ID, err, ids[4])
	}
}

// int64s runs a query whose rows are one bigint each.
func (e *env) int64s(t *testing.T, q string, args ...any) []int64 {
	t.Helper()
	iter := e.session.Query(q, args...).Iter()
	var out []int64
	var v int64
	for iter.Scan(&v) {
		out = append(out, v)
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// A user who is never idle, ten minutes of events by the tier's clock: the
// sweeps flush the user without evicting it, so the pending events stay
// under the bound (plus what one sweep interval adds), the cold state is
// never older than the age bound (plus a sweep interval), and each
// snapshot's replay position is past the previous one.
func TestNeverIdleUserIsFlushed(t *testing.T) {
	const (
		bound     = 500
		perSecond = 20
		sweepEach = 5 // seconds
	)
	clk := newClock()
	e := newEnv(t, store.TierConfig{IdleTimeout: 30 * time.Minute, FlushAfter: time.Minute, FlushPending: bound, FlushChunk: 200, Now: clk.Now})
	ctx := context.Background()
	const user = "u-bot"
	offset, lastReplay := 0, int64(-1)
	for second := 1; second <= 600; second++ {
		evs := make([]state.UserEvent, perSecond)
		for i := range evs {
			evs[i] = event(user, offset, schemas.Click)
			offset++
		}
		e.apply(t, ctx, 0, evs...)
		if err := e.hot.MarkPartitionApplied(ctx, "interactions", 0, int64(offset-1), e.epoch); err != nil {
			t.Fatal(err)
		}
		clk.advance(time.Second)
		if second%sweepEach == 0 {
			if n, err := e.tier.Sweep(ctx, 100); err != nil || n != 0 {
				t.Fatalf("second %d: swept %d, %v", second, n, err)
			}
		}
		s, ok, err := e.hot.ReadSession(ctx, user)
		if err != nil || !ok {
			t.Fatalf("second %d: the user is not hot (%v)", second, err)
		}
		if pending := s.PendingEnd - s.PendingStart; pending > bound+sweepEach*perSecond {
			t.Fatalf("second %d: %d events pending, bound %d", second, pending, bound)
		}
		if second > 60+sweepEach {
			st, err := e.tier.ColdState(ctx, user)
			if err != nil {
				t.Fatalf("second %d: no cold state: %v", second, err)
			}
			if age := clk.Now().UnixMilli() - st.FlushedMs; age > (60+sweepEach)*1000 {
				t.Fatalf("second %d: cold state %d ms old", second, age)
			}
		}
		if second%60 == 0 {
			snap, err := e.tier.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			from := snap.ReplayFrom["interactions/0"]
			if from <= lastReplay {
				t.Fatalf("second %d: the snapshot replays from %d, the one before from %d", second, from, lastReplay)
			}
			lastReplay = from
		}
	}
	if st, err := e.tier.ColdState(ctx, user); err != nil || st.ArmCounts["home\x1fsku-0"][1] == 0 || st.Watermarks["interactions/0"] < int64(offset-bound-sweepEach*perSecond) {
		t.Fatalf("cold state %+v, %v after %d events", st.Watermarks, err, offset)
	}
	if e.tier.Stats().Flushes == 0 || e.tier.Stats().Offloads != 0 {
		t.Fatalf("stats %+v", e.tier.Stats())
	}
}

// History events are written with the configured retention as their TTL,
// and without one when it is 0.
func TestHistoryRetention(t *testing.T) {
	ctx := context.Background()
	_, session := stacktest.OpenCold(t, stacktest.UniqueName("it"), "bs", true)
	for _, retention := range []time.Duration{time.Hour, 0} {
		ks := stacktest.UniqueName("it")
		t.Cleanup(func() { _ = session.Query("DROP KEYSPACE IF EXISTS " + ks).Exec() })
		c, err := stacktest.NewCold(ctx, session, cold.Config{Keyspace: ks, HistoryRetention: retention})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.WriteHistory(ctx, []state.HistoryEvent{event("u-ttl", 1, schemas.Click).Event}); err != nil {
			t.Fatal(err)
		}
		var ttl *int
		if err := session.Query(`SELECT TTL(item_id) FROM ` + ks + `.history WHERE user_id = 'u-ttl'`).Scan(&ttl); err != nil {
			t.Fatal(err)
		}
		switch {
		case retention == 0 && ttl != nil:
			t.Fatalf("no retention, but a TTL of %d s", *ttl)
		case retention > 0 && (ttl == nil || *ttl > 3600 || *ttl < 3500):
			t.Fatalf("retention 1h, TTL %v", ttl)
		}
	}
	if _, err := cold.New(session, cold.Config{Keyspace: "x", HistoryRetention: cold.MaxTTL + time.Second}); err == nil {
		t.Fatal("a retention past CQL's largest TTL: accepted")
	}
}

// A user who touches more arms than the bound (a bot walking the whole
// catalogue, with the longest ids the schema accepts) keeps own counts for
// the first arms only, so the state a flush writes stays within what the
// cold tier accepts; every event still reaches the history. Without the
// bound the flush is refused for good (the request is past Cassandra's 16
// MiB) and retried for ever.
func TestABotsOwnCountsStayFlushable(t *testing.T) {
	const arms = 30_000
	e := newEnv(t, store.TierConfig{IdleTimeout: time.Millisecond, FlushChunk: 5000})
	ctx := context.Background()
	const user = "u-walker"
	limits := schemas.DefaultLimits()
	ctxName := strings.Repeat("c", limits.MaxContextBytes)
	item := func(i int) string { return fmt.Sprintf("%0*d", limits.MaxIDBytes, i) }
	evs := make([]state.UserEvent, arms)
	for i := range evs {
		evs[i] = state.UserEvent{Offset: int64(i), Event: state.HistoryEvent{
			UserID: user, EventID: "e-" + strconv.Itoa(i), ItemID: item(i), Context: ctxName,
			Type: int32(schemas.Click), EventTimeMs: int64(1_767_225_600_000 + i),
		}}
	}
	for i := 0; i < arms; i += 5000 {
		e.apply(t, ctx, 0, evs[i:i+5000]...)
	}
	// A redelivery changes nothing.
	e.apply(t, ctx, 0, evs[store.DefaultUserCounts-5:store.DefaultUserCounts+5]...)
	counts, err := e.hot.UserArmCounts(ctx, user)
	if err != nil || len(counts) != store.DefaultUserCounts {
		t.Fatalf("hot: %d own counts, %v; want the bound, %d", len(counts), err, store.DefaultUserCounts)
	}
	time.Sleep(5 * time.Millisecond)
	if n, err := e.tier.Sweep(ctx, 100); err != nil || n != 1 {
		t.Fatalf("sweep offloaded %d, err %v; want 1", n, err)
	}
	st, err := e.tier.ColdState(ctx, user)
	if err != nil || len(st.ArmCounts) != store.DefaultUserCounts {
		t.Fatalf("cold: %d own counts, %v; want %d", len(st.ArmCounts), err, store.DefaultUserCounts)
	}
	first, past := ctxName+"\x1f"+item(store.DefaultUserCounts-1), ctxName+"\x1f"+item(store.DefaultUserCounts)
	if st.ArmCounts[first][state.TypeIndex(schemas.Click)] != 1 || st.ArmCounts[past] != nil {
		t.Fatalf("cold: the last arm within the bound %v, the first past it %v", st.ArmCounts[first], st.ArmCounts[past])
	}
	// The state the bound keeps out: the cold tier refuses it for good.
	big := state.UserState{UserID: "u-unbounded", Version: 1, ArmCounts: map[string][]int64{}}
	for i := range arms {
		big.ArmCounts[ctxName+"\x1f"+item(i)] = make([]int64, state.NumEventTypes+1)
	}
	if err := e.cold.WriteUserState(ctx, big); !errors.Is(err, state.ErrRefused) {
		t.Fatalf("writing %d own counts: %v; want a refusal for good", arms, err)
	}
	var rows int
	if err := e.session.Query(`SELECT COUNT(*) FROM `+e.cold.Keyspace()+`.history WHERE user_id = ?`, user).Scan(&rows); err != nil || rows != arms {
		t.Fatalf("history: %d rows, %v; want %d", rows, err, arms)
	}
}

// Two namespaces share a keyspace: each offloads its own state of the same
// user and snapshots its own arms; after the hot tier of one is lost, it
// restores its own snapshot and reloads its own user state, and the other
// namespace is untouched. Pairing a namespace with another keyspace is
// refused.
func TestNamespacesShareAKeyspace(t *testing.T) {
	ctx := context.Background()
	rdb := stacktest.Redis(t)
	ks := stacktest.UniqueName("it")
	_, session := stacktest.OpenCold(t, ks, "bs", true)
	const user = "u-both"
	arm := state.Arm{Context: "home", Item: "sku-1"}
	type ns struct {
		prefix string
		env    *env
		clicks int
	}
	spaces := []*ns{{prefix: stacktest.UniqueName("it_a"), clicks: 2}, {prefix: stacktest.UniqueName("it_b"), clicks: 5}}
	for _, n := range spaces {
		c, err := stacktest.NewCold(ctx, session, cold.Config{Keyspace: ks, Namespace: n.prefix})
		if err != nil {
			t.Fatal(err)
		}
		h, err := hot.New(rdb, hot.Keys{Prefix: n.prefix, Shards: 8})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Pair(ctx, ks); err != nil {
			t.Fatal(err)
		}
		tier, err := store.NewTier(h, c, store.TierConfig{IdleTimeout: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		epoch, err := h.Recover(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		n.env = &env{epoch: epoch, rdb: rdb, hot: h, cold: c, session: session, tier: tier}
		var evs []state.UserEvent
		for i := range n.clicks {
			ev := event(user, i, schemas.Click)
			ev.Event.ItemID = arm.Item
			evs = append(evs, ev)
		}
		n.env.apply(t, ctx, 0, evs...)
		wms, _, err := h.Watermarks(ctx, "interactions", 0)
		if err != nil {
			t.Fatal(err)
		}
		sh := h.Keys().Shard(arm)
		if _, err := h.Apply(ctx, "interactions", 0, int64(n.clicks-1), epoch, []state.ShardBatch{{Shard: sh, Expected: wms[sh],
			Deltas: []state.ArmDelta{{Arm: arm, Counts: state.Counts{ByType: [state.NumEventTypes]int64{0, int64(n.clicks)}}}}}}); err != nil {
			t.Fatal(err)
		}
		if err := h.MarkPartitionApplied(ctx, "interactions", 0, int64(n.clicks-1), epoch); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		if n, err := tier.Sweep(ctx, 100); err != nil || n != 1 {
			t.Fatalf("sweep offloaded %d, %v", n, err)
		}
		if _, err := tier.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check := func(n *ns, when string) {
		t.Helper()
		got, err := n.env.hot.Counts(ctx, []state.Arm{arm})
		if err != nil || got[0].ByType[state.TypeIndex(schemas.Click)] != int64(n.clicks) {
			t.Fatalf("%s: %s counts %v, %v; want %d clicks", when, n.prefix, got, err, n.clicks)
		}
		if err := n.env.tier.EnsureLoaded(ctx, []string{user}, n.env.epoch); err != nil {
			t.Fatal(err)
		}
		own, err := n.env.hot.UserArmCounts(ctx, user)
		if err != nil || own["home\x1fsku-1"][state.TypeIndex(schemas.Click)] != int64(n.clicks) {
			t.Fatalf("%s: %s's own counts of %s %v, %v; want %d clicks", when, n.prefix, user, own, err, n.clicks)
		}
	}
	// The first namespace loses its hot tier.
	a, b := spaces[0], spaces[1]
	stacktest.DeleteKeys(t, rdb, a.prefix+":*")
	epoch, err := a.env.tier.Recover(ctx, a.env.epoch)
	if err != nil {
		t.Fatal(err)
	}
	a.env.epoch = epoch
	check(a, "restored")
	check(b, "untouched")

	// The second namespace's prefix with another keyspace: refused.
	if err := b.env.hot.Pair(ctx, ks+"_other"); !errors.Is(err, hot.ErrPairing) || !strings.Contains(err.Error(), "keeps its cold state in keyspace "+ks) {
		t.Fatalf("pairing %s with another keyspace: %v", b.prefix, err)
	}
}

// The deduplication window holds the latest DedupWindow events of a user:
// a copy of an event that fell out of it counts again (past the window), a
// copy of one still in it does not; the window survives an offload and a
// reload, oldest first, so the decisions after the reload are the same.
func TestTheDedupWindowKeepsTheLatestEvents(t *testing.T) {
	e := newEnv(t, store.TierConfig{IdleTimeout: time.Millisecond, DedupWindow: 3})
	ctx := context.Background()
	const user = "u-window"
	ev := func(offset, id int) state.UserEvent {
		u := event(user, id, schemas.Click)
		u.Offset = int64(offset)
		return u
	}
	apply := func(when string, want []int64, evs ...state.UserEvent) {
		t.Helper()
		if err := e.tier.EnsureLoaded(ctx, []string{user}, e.epoch); err != nil {
			t.Fatal(err)
		}
		_, dups, err := e.tier.ApplyUserEvents(ctx, "interactions", 0, e.epoch, map[string][]state.UserEvent{user: evs})
		if err != nil || !slices.Equal(dups, want) {
			t.Fatalf("%s: duplicates %v, %v; want %v", when, dups, err, want)
		}
	}
	// Events 0-4 at offsets 0-4: the window holds 2, 3, 4.
	apply("five events", nil, ev(0, 0), ev(1, 1), ev(2, 2), ev(3, 3), ev(4, 4))
	// A copy of 0 (out of the window) counts; one of 4 does not. The
	// window then holds 4, 0 (offset 5) and the duplicate at offset 6.
	apply("copies", []int64{6}, ev(5, 0), ev(6, 4))
	all := []state.UserEvent{ev(0, 0), ev(1, 1), ev(2, 2), ev(3, 3), ev(4, 4), ev(5, 0), ev(6, 4)}
	apply("redelivered", []int64{6}, all...)
	time.Sleep(5 * time.Millisecond)
	if n, err := e.tier.Sweep(ctx, 100); err != nil || n != 1 {
		t.Fatalf("sweep offloaded %d, err %v; want 1", n, err)
	}
	st, err := e.tier.ColdState(ctx, user)
	if err != nil || len(st.Dedup) != 3*hot.DedupRecordBytes {
		t.Fatalf("cold window of %d bytes, %v; want 3 records", len(st.Dedup), err)
	}
	apply("redelivered after a reload", []int64{6}, all...)
	// A copy of 4 at offset 7 is still a duplicate (its record holds the
	// id too); three more events push every record of 4 out of the
	// window, and a copy of it counts.
	apply("after the reload", []int64{7}, ev(7, 4))
	apply("more events", nil, ev(8, 8), ev(9, 9), ev(10, 10), ev(11, 4))
	counts, err := e.hot.UserArmCounts(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	var clicks int64
	for _, c := range counts {
		clicks += c[state.TypeIndex(schemas.Click)]
	}
	if clicks != 10 {
		t.Fatalf("%d clicks counted, want 10 (12 events, 2 duplicates within the window)", clicks)
	}
}

// A window made smaller keeps the newest records: the user's next events
// see the latest of them only; made larger again, it grows from what it
// holds.
func TestTheDedupWindowShrinks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, store.TierConfig{DedupWindow: 4})
	const user = "u-shrink"
	ev := func(offset, id int) state.UserEvent {
		u := event(user, id, schemas.Click)
		u.Offset = int64(offset)
		return u
	}
	// Seven events through a window of 4: it holds 3, 4, 5, 6.
	e.apply(t, ctx, 0, ev(0, 0), ev(1, 1), ev(2, 2), ev(3, 3), ev(4, 4), ev(5, 5), ev(6, 6))
	small, err := store.NewTier(e.hot, e.cold, store.TierConfig{DedupWindow: 2})
	if err != nil {
		t.Fatal(err)
	}
	// With a window of 2, a redelivery (nothing new) keeps 5 and 6; then a
	// copy of 4 counts, replacing 5, the oldest, and one of 6 does not.
	for _, c := range []struct {
		evs  []state.UserEvent
		want []int64
	}{{[]state.UserEvent{ev(6, 6)}, nil}, {[]state.UserEvent{ev(7, 4)}, nil}, {[]state.UserEvent{ev(8, 6)}, []int64{8}}} {
		_, dups, err := small.ApplyUserEvents(ctx, "interactions", 0, e.epoch, map[string][]state.UserEvent{user: c.evs})
		if err != nil || !slices.Equal(dups, c.want) {
			t.Fatalf("offset %d: duplicates %v, %v; want %v", c.evs[0].Offset, dups, err, c.want)
		}
	}
	// Back to 4: the window holds 6 and 4 (offset 7), and grows from
	// there: 9 and 10 join it, and a copy of 6 is still a duplicate, one
	// of 5 (pushed out at offset 7) is not.
	for _, c := range []struct {
		evs  []state.UserEvent
		want []int64
	}{{[]state.UserEvent{ev(9, 9), ev(10, 10)}, nil}, {[]state.UserEvent{ev(11, 6), ev(12, 5)}, []int64{11}}} {
		_, dups, err := e.tier.ApplyUserEvents(ctx, "interactions", 0, e.epoch, map[string][]state.UserEvent{user: c.evs})
		if err != nil || !slices.Equal(dups, c.want) {
			t.Fatalf("offset %d, window 4 again: duplicates %v, %v; want %v", c.evs[0].Offset, dups, err, c.want)
		}
	}
	s, _, err := e.hot.ReadSession(ctx, user)
	if err != nil || len(s.State.Dedup) != 4*hot.DedupRecordBytes {
		t.Fatalf("a window of %d bytes, %v; want 4 records", len(s.State.Dedup), err)
	}
}
