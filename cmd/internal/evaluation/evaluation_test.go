package evaluation

import (
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/sampler/ope"
	"github.com/banditstream/banditstream/schemas"
)

func decision(id, user string, atMs int64, shown ...string) *schemas.Decision {
	d := &schemas.Decision{RequestId: id, UserId: user, Context: "home", Candidates: []string{"a", "b", "c"},
		Alpha: []float64{2, 3, 1}, Beta: []float64{8, 7, 1}, DecidedTimeMs: atMs, ModelVersion: "beta(1,1);w=1,0,0,0;lambda=1", Seed: 7}
	for _, s := range shown {
		d.Items = append(d.Items, &schemas.RankedItem{ItemId: s, Propensity: 0.5})
	}
	return d
}

// A reward goes to the latest decision that showed its item to its user in
// its context, within the window, whatever the slot: a later decision
// showing the item lower takes it from an earlier one showing it first;
// slots past those evaluated take rewards but carry none; other users,
// contexts and late events reward nothing.
func TestJoinAttributesByLastTouch(t *testing.T) {
	ds := []*schemas.Decision{
		decision("d1", "u", 1000, "a", "b"),
		decision("d2", "u", 2000, "b", "a"), // shows a second: takes a's click at 2500
		decision("d3", "v", 1000, "c", "a"),
		decision("bad", "u", 1500), // nothing shown: left out
	}
	rewards := Rewards{}
	for _, ev := range []*schemas.Interaction{
		{UserId: "u", Context: "home", ItemId: "a", EventTimeMs: 1500}, // d1 slot 0
		{UserId: "u", Context: "home", ItemId: "a", EventTimeMs: 2500}, // d2 slot 1: not evaluated with one slot
		{UserId: "u", Context: "home", ItemId: "b", EventTimeMs: 2000}, // d2 slot 0, at its decision's time
		{UserId: "v", Context: "other", ItemId: "c", EventTimeMs: 1100},
		{UserId: "v", Context: "home", ItemId: "c", EventTimeMs: 1000 + 6000}, // past the window
		{UserId: "w", Context: "home", ItemId: "c", EventTimeMs: 1100},
	} {
		rewards.Add(ev)
	}
	log, skipped := Join(ds, rewards, 5*time.Second, 1)
	if skipped != 1 || len(log) != 3 {
		t.Fatalf("%d decisions, %d skipped", len(log), skipped)
	}
	got := []float64{log[0].Reward[0], log[1].Reward[0], log[2].Reward[0]}
	if got[0] != 1 || got[1] != 1 || got[2] != 0 {
		t.Fatalf("rewards %v, want [1 1 0]", got)
	}
	log, _ = Join(ds, rewards, 5*time.Second, 2)
	if log[0].Reward[1] != 0 || log[1].Reward[1] != 1 || log[0].Reward[0] != 1 {
		t.Fatalf("two slots: %v and %v", log[0].Reward, log[1].Reward)
	}
	if log[0].Prior != sampler.DefaultPrior || log[0].Shown[0] != 0 || log[0].Propensity[0] != 0.5 || log[0].Arms[1].Alpha() != 3 {
		t.Fatalf("decision d1 as the estimators take it: %+v", log[0])
	}
}

func TestLoggedPrior(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    sampler.Prior
	}{
		{"beta(2,30);w=1,0,0,0;lambda=1", sampler.Prior{Alpha: 2, Beta: 30}},
		{"beta(1,1);w=1,0,0,0;lambda=1;prior=context:beta(2.033,97.97)", sampler.Prior{Alpha: 2.033, Beta: 97.97}},
		{"beta(1,1);w=1;lambda=1;prior=global", sampler.DefaultPrior},
		{"my-model-7", sampler.DefaultPrior},
	} {
		if got := LoggedPrior(tc.version); got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.version, got, tc.want)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ope.Policy
		err  string
	}{
		{in: "logged", want: ope.Policy{Name: "logged", Kind: ope.Logged}},
		{in: "uniform", want: ope.Policy{Name: "uniform", Kind: ope.Uniform}},
		{in: "greedy=-mode mean", want: ope.Policy{Name: "greedy", Kind: ope.Mean}},
		{in: "strong prior=-prior-alpha 20 -prior-beta 20", want: ope.Policy{Name: "strong prior", Kind: ope.Thompson, Prior: &sampler.Prior{Alpha: 20, Beta: 20}}},
		{in: "random", err: "not logged, mean, uniform or name=flags"},
		{in: "x=-mode sideways", err: "-mode"},
		{in: "x=-prior-alpha -1 -prior-beta 2", err: "shape"},
		{in: "x=-half-life 6h", err: "the flags are"},
		{in: "x=-prior-alpha 2 extra", err: "unexpected"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePolicy(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got.Name != tc.want.Name || got.Kind != tc.want.Kind || (got.Prior == nil) != (tc.want.Prior == nil) ||
				(got.Prior != nil && *got.Prior != *tc.want.Prior) {
				t.Fatalf("%+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
