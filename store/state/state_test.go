package state_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/store/state"
)

type event struct {
	typ  int
	atMs int64
}

// The decayed counts of the same events are the same whatever their
// order and however they are split into batches and merged, and equal the
// sum of 2^((t − T)/h) recomputed event by event.
func TestDecayedCountsOrderFree(t *testing.T) {
	d := sampler.Decay{HalfLife: 6 * time.Hour}
	t0 := int64(1_767_225_600_000)
	rng := rand.New(rand.NewPCG(1, 2))
	events := make([]event, 5000)
	for i := range events {
		// Thirty days of events: hundreds of half-lives.
		events[i] = event{typ: rng.IntN(state.NumEventTypes), atMs: t0 + rng.Int64N(30*24*time.Hour.Milliseconds())}
	}
	at := t0 + 31*24*time.Hour.Milliseconds()
	var want [state.NumEventTypes]float64
	for _, e := range events {
		want[e.typ] += math.Exp2(float64(e.atMs-at) / float64(d.HalfLife.Milliseconds()))
	}
	inOrder := observe(events, d)
	for trial := range 5 {
		shuffled := append([]event(nil), events...)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		// In batches of random sizes, each merged into the total.
		var total state.Counts
		for len(shuffled) > 0 {
			n := min(1+rng.IntN(200), len(shuffled))
			b := observe(shuffled[:n], d)
			total.Add(b, d)
			shuffled = shuffled[n:]
		}
		if total.ByType != inOrder.ByType || total.LastEventMs != inOrder.LastEventMs {
			t.Fatalf("trial %d: counts %v at %d, want %v at %d", trial, total.ByType, total.LastEventMs, inOrder.ByType, inOrder.LastEventMs)
		}
		got := total.At(at, d)
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-12*want[i] {
				t.Errorf("trial %d type %d: %v, recomputed %v", trial, i, got[i], want[i])
			}
		}
		// Through a snapshot's encoding and back, bit for bit.
		back, err := state.DecodeCounts(state.EncodeCounts(total))
		if err != nil || back != total {
			t.Fatalf("trial %d: %+v round-trips to %+v (%v)", trial, total, back, err)
		}
	}
	// Without decay the decayed counts stay zero and At is the counts.
	plain := observe(events, sampler.Decay{})
	if plain.Decayed != ([state.NumEventTypes]float64{}) {
		t.Errorf("decayed counts %v without decay", plain.Decayed)
	}
	if got := plain.At(at, sampler.Decay{}); got[0] != float64(plain.ByType[0]) {
		t.Errorf("At without decay: %v, counts %v", got, plain.ByType)
	}
	if len(state.EncodeCounts(plain)) != state.NumEventTypes+1 {
		t.Errorf("a snapshot without decay carries %d numbers", len(state.EncodeCounts(plain)))
	}
}

func observe(events []event, d sampler.Decay) state.Counts {
	var c state.Counts
	for _, e := range events {
		c.Observe(e.typ, e.atMs, d)
	}
	return c
}
