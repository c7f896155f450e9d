package hot_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// With a half-life, a user's own counts decay by event time like the
// arms': the same events applied in time order to one user and shuffled,
// in other batches and partly delivered twice, to another give the same
// decayed counts, equal to a recomputation from the events to 1e-9
// relative; the session's state read for the cold tier and installed for a
// third user gives them back bit for bit.
func TestUserCountsDecayOrderFree(t *testing.T) {
	ctx := context.Background()
	const halfLife = time.Hour
	h, err := hot.New(stacktest.Redis(t), hot.Keys{Prefix: stacktest.UniqueName("it"), Shards: 8, HalfLife: halfLife})
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := h.Recover(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	install := func(st state.UserState) {
		t.Helper()
		token, ok, err := h.LockSession(ctx, st.UserID, 10*time.Second)
		if err != nil || !ok {
			t.Fatalf("lock %s: %v %v", st.UserID, ok, err)
		}
		if installed, err := h.InstallSession(ctx, token, epoch, st, nil, time.Now().UnixMilli()); !installed || err != nil {
			t.Fatalf("install %s: %v %v", st.UserID, installed, err)
		}
	}
	install(state.UserState{UserID: "ordered"})
	install(state.UserState{UserID: "shuffled"})

	rng := rand.New(rand.NewPCG(9, 10))
	now := time.Now().UnixMilli()
	types := []schemas.EventType{schemas.Impression, schemas.Impression, schemas.Click, schemas.Order}
	evs := make([]state.UserEvent, 400)
	for i := range evs {
		evs[i] = state.UserEvent{Offset: int64(i), Event: state.HistoryEvent{EventID: fmt.Sprint("e", i), ItemID: fmt.Sprint("sku-", rng.IntN(4)),
			Context: "home", Type: int32(types[rng.IntN(len(types))]), EventTimeMs: now - rng.Int64N(48*time.Hour.Milliseconds())}}
	}
	limits := state.SessionLimits{HistoryCap: 10, DedupWindow: 1000}
	apply := func(user string, batch []state.UserEvent) {
		t.Helper()
		if notLoaded, _, _, err := h.ApplyUserEvents(ctx, "ev", 0, epoch, map[string][]state.UserEvent{user: batch}, limits, now); err != nil || len(notLoaded) > 0 {
			t.Fatalf("apply %s: %v %v", user, notLoaded, err)
		}
	}
	for i := 0; i < len(evs); i += 50 {
		apply("ordered", evs[i:i+50])
	}
	// The shuffled user gets the events out of time order, in batches of
	// 37; each batch after the first repeats part of the one before (a
	// redelivery), which counts nothing.
	shuffled := append([]state.UserEvent(nil), evs...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i := range shuffled {
		shuffled[i].Offset = int64(i)
	}
	for i := 0; i < len(shuffled); i += 37 {
		apply("shuffled", shuffled[max(i-10, 0):min(i+37, len(shuffled))])
	}

	stats, err := h.TouchSessions(ctx, []string{"ordered", "shuffled"}, now)
	if err != nil {
		t.Fatal(err)
	}
	d := sampler.Decay{HalfLife: halfLife}
	at := now + time.Hour.Milliseconds()
	for a, got := range stats[0].Arms {
		other := stats[1].Arms[a]
		var want [state.NumEventTypes]float64
		var plain [state.NumEventTypes]int64
		for _, e := range evs {
			if e.Event.ItemID == a.Item {
				ty := int(e.Event.Type) - 1
				want[ty] += d.Factor(at - e.Event.EventTimeMs)
				plain[ty]++
			}
		}
		x, y := got.At(at, d), other.At(at, d)
		for ty := range want {
			if math.Abs(x[ty]-want[ty]) > 1e-9*want[ty] || math.Abs(y[ty]-want[ty]) > 1e-9*want[ty] {
				t.Fatalf("%v type %d: decayed %v (ordered), %v (shuffled), recomputed %v", a, ty, x[ty], y[ty], want[ty])
			}
		}
		if got.ByType != plain || other.ByType != plain {
			t.Fatalf("%v: counts %v and %v, want %v", a, got.ByType, other.ByType, plain)
		}
	}
	if len(stats[0].Arms) != 4 || len(stats[1].Arms) != 4 {
		t.Fatalf("%d and %d arms, want 4", len(stats[0].Arms), len(stats[1].Arms))
	}

	// To the cold tier's form and back, for another user.
	counts, err := h.UserArmCounts(ctx, "shuffled")
	if err != nil {
		t.Fatal(err)
	}
	install(state.UserState{UserID: "reloaded", ArmCounts: counts})
	again, err := h.TouchSessions(ctx, []string{"reloaded"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for a, c := range stats[1].Arms {
		if again[0].Arms[a] != c {
			t.Fatalf("%v reloaded as %+v, was %+v", a, again[0].Arms[a], c)
		}
	}
}
