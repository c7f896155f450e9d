package consumers

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// fakePriorStore holds arms in shards and the shared fit as the hot tier
// does; its claim expires by the test's clock.
type fakePriorStore struct {
	mu        sync.Mutex
	shards    []map[state.Arm]state.Counts
	fit       state.PriorFit
	claimedAt time.Time
	now       *time.Time
	fits      int
}

func (f *fakePriorStore) Shards() int { return len(f.shards) }

func (f *fakePriorStore) ShardCounts(_ context.Context, shard int, fn func(state.Arm, state.Counts)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, c := range f.shards[shard] {
		fn(a, c)
	}
	return nil
}

func (f *fakePriorStore) Priors(context.Context) (state.PriorFit, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fit, nil
}

func (f *fakePriorStore) SetPriors(_ context.Context, fit state.PriorFit) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fit = fit
	f.fits++
	return nil
}

func (f *fakePriorStore) ClaimPriorFit(_ context.Context, every time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.claimedAt.IsZero() && f.now.Sub(f.claimedAt) < every {
		return false, nil
	}
	f.claimedAt = *f.now
	return true, nil
}

func (f *fakePriorStore) add(a state.Arm, impressions, clicks int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shards[state.Shard(a, len(f.shards))][a] = state.Counts{ByType: [state.NumEventTypes]int64{impressions, clicks}}
}

// Two contexts, one whose items click at about 2% and one at about 30%:
// each gets a prior at its own rate; a context with too few arms keeps the
// global prior; two processes sharing the store fit once per period.
func TestContextPriorsFitEachContext(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	store := &fakePriorStore{shards: make([]map[state.Arm]state.Counts, 4), now: &now}
	for i := range store.shards {
		store.shards[i] = map[state.Arm]state.Counts{}
	}
	for i := range 40 {
		store.add(state.Arm{Context: "low", Item: fmt.Sprint("l", i)}, 1000, int64(10+i%20))       // 1%–3%
		store.add(state.Arm{Context: "high", Item: fmt.Sprint("h", i)}, 1000, int64(250+i*100/40)) // 25%–35%
	}
	store.add(state.Arm{Context: "few", Item: "f1"}, 1000, 500)
	cfg := ContextPriorsConfig{Every: time.Minute, Now: func() time.Time { return now }}
	a, err := NewContextPriors(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewContextPriors(cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	if _, label, ok := a.Prior("low"); ok || label != "global" {
		t.Fatalf("before a fit: %q, %v", label, ok)
	}
	for _, p := range []*ContextPriors{a, b, a} {
		if err := p.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if store.fits != 1 || b.FittedMs() != now.UnixMilli() {
		t.Fatalf("%d fits, b's fit of %d; want one fit, shared", store.fits, b.FittedMs())
	}
	mean := func(p sampler.Prior) float64 { return p.Alpha / (p.Alpha + p.Beta) }
	low, label, ok := b.Prior("low")
	if !ok || math.Abs(mean(low)-0.0195) > 0.003 || !strings.HasPrefix(label, "context:beta(") {
		t.Fatalf("low: %+v (mean %.4f) %q %v", low, mean(low), label, ok)
	}
	high, _, ok := b.Prior("high")
	if !ok || math.Abs(mean(high)-0.2988) > 0.01 {
		t.Fatalf("high: %+v (mean %.4f)", high, mean(high))
	}
	if _, _, ok := b.Prior("few"); ok {
		t.Fatal("a context of one arm was fitted")
	}
	// A period later the priors follow the arms.
	now = now.Add(time.Minute)
	for i := range 40 {
		store.add(state.Arm{Context: "low", Item: fmt.Sprint("l", i)}, 1000, int64(100+i%20))
	}
	if err := b.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if low2, _, _ := a.Prior("low"); store.fits != 2 || math.Abs(mean(low2)-0.1095) > 0.005 {
		t.Fatalf("after a period: %d fits, low %+v (mean %.4f)", store.fits, low2, mean(low2))
	}
}

// staticPriors gives fixed priors by context, labelled as ContextPriors
// labels them (without allocating, as ContextPriors does not).
type staticPriors map[string]sampler.Prior

func (s staticPriors) Prior(c string) (sampler.Prior, string, bool) {
	p, ok := s[c]
	if !ok {
		return sampler.Prior{}, "global", false
	}
	return p, staticLabels[p], true
}

var staticLabels = map[sampler.Prior]string{}

func (s staticPriors) labelled() staticPriors {
	for _, p := range s {
		staticLabels[p] = fmt.Sprintf("context:beta(%g,%g)", p.Alpha, p.Beta)
	}
	return s
}

// With per-context priors, an item never seen ranks at its context's prior
// mean, a counted item's counts are added to that prior, the version names
// the prior, and an explanation says the unseen item's posterior is the
// prior.
func TestScorerUsesTheContextsPrior(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{
		{Context: "high", Item: "seen"}: {ByType: [state.NumEventTypes]int64{10, 1}},
	}}
	out := &fakeWriter{}
	priors := staticPriors{"high": {Alpha: 3, Beta: 7}, "low": {Alpha: 1, Beta: 49}}.labelled()
	s := newTestScorer(t, ScorerConfig{Priors: priors}, reader, nil, out)
	w := newScoreWorker(s, 0)
	var batch []record
	for i, c := range []string{"high", "low", "other"} {
		batch = append(batch, requestRecord(t, int64(i), &schemas.ScoreRequest{RequestId: c, UserId: "u", Context: c,
			Candidates: []string{"new", "seen"}, K: 2, Mode: schemas.ModeMean, Explain: true}, schemas.Protobuf))
	}
	if err := w.process(t.Context(), t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		newMean, seenMean float64
		version           string
	}{
		"high":  {0.3, 4.0 / 20, ";prior=context:beta(3,7)"},
		"low":   {1.0 / 50, 1.0 / 50, ";prior=context:beta(1,49)"},
		"other": {0.5, 0.5, ";prior=global"},
	}
	for _, m := range out.written() {
		r := decodeResponse(t, m)
		wt := want[r.GetRequestId()]
		if !strings.HasSuffix(r.GetModelVersion(), wt.version) {
			t.Errorf("%s: version %q, want the suffix %q", r.GetRequestId(), r.GetModelVersion(), wt.version)
		}
		for _, it := range r.GetItems() {
			w := wt.newMean
			if it.GetItemId() == "seen" {
				w = wt.seenMean
			}
			if math.Abs(it.GetMean()-w) > 1e-12 {
				t.Errorf("%s/%s: mean %v, want %v", r.GetRequestId(), it.GetItemId(), it.GetMean(), w)
			}
			if it.GetItemId() == "new" && it.GetExplanation().GetSource() != schemas.SourcePrior {
				t.Errorf("%s/new: source %v, want the prior", r.GetRequestId(), it.GetExplanation().GetSource())
			}
		}
	}
	if len(out.written()) != 3 {
		t.Fatalf("%d responses", len(out.written()))
	}
}
