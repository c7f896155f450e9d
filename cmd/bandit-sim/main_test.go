package main

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, stacktest.KafkaIdleGoroutines()...)
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"defaults", nil, ""},
		{"k above items", []string{"-items", "3", "-k", "4"}, "-k (4) must be between 1 and -items (3)"},
		{"no users", []string{"-users", "0"}, "must be positive"},
		{"negative bad-every", []string{"-bad-every", "-1"}, "-bad-every"},
		{"drift", []string{"-scenario", "drift"}, ""},
		{"unknown scenario", []string{"-scenario", "sideways"}, "-scenario"},
		{"context levels", []string{"-context-levels", "1,4"}, ""},
		{"negative context level", []string{"-context-levels", "1,-4"}, "-context-levels"},
		{"runs to compare", []string{"-compare", "no decay=.local/a,decay=.local/b"}, ""},
		{"a run without a label", []string{"-compare", "nolabel"}, "-compare"},
		{"no new items", []string{"-new-item-every", "0s"}, "-new-item-every"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			if err := config.Parse(newFlags(&o), tc.args, func(string) (string, bool) { return "", false }); err != nil {
				t.Fatal(err)
			}
			err := o.validate()
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// The world's oracle and uniform figures follow from its rates.
func TestWorld(t *testing.T) {
	w := newWorld(7, []string{"home"}, 10, 3)
	rates := w.ctr["home"]
	best := w.best["home"]
	for i, r := range rates {
		if r <= 0 || r >= 1 {
			t.Fatalf("rate %d is %v", i, r)
		}
		if r > rates[best] {
			t.Fatalf("item %d (%v) beats the best, %d (%v)", i, r, best, rates[best])
		}
	}
	var sum float64
	for _, r := range rates {
		sum += r
	}
	if got, want := w.uniform["home"], 3*sum/10; got != want {
		t.Fatalf("uniform %v, want %v", got, want)
	}
	sorted := slices.Sorted(slices.Values(rates))
	if got, want := w.oracle["home"], sorted[9]+sorted[8]+sorted[7]; math.Abs(got-want) > 1e-12 {
		t.Fatalf("oracle %v, want the best three's %v", got, want)
	}
	if n, err := w.itemIndex("sku-9"); err != nil || n != 9 {
		t.Fatalf("sku-9: %d, %v", n, err)
	}
	if _, err := w.itemIndex("sku-10"); err == nil {
		t.Fatal("sku-10 is not in a 10-item catalogue")
	}
}

// Drift: each context's best item falls to its worst rate and the item of
// the middle becomes the best by the old margin; the oracle follows.
// New items: the catalogue grows, each new item with a rate per context
// scaled by the context's level.
func TestWorldScenarios(t *testing.T) {
	w := newWorld(3, []string{"home", "search"}, 12, 3, 1, 4)
	before := map[string][]float64{}
	for _, c := range w.contexts {
		before[c] = slices.Clone(w.ctr[c])
	}
	oldBest := maps.Clone(w.best)
	w.switchBest()
	for _, c := range w.contexts {
		rates, was := w.ctr[c], before[c]
		if rates[oldBest[c]] != slices.Min(was) {
			t.Errorf("%s: the old best's rate is %v, want the worst's %v", c, rates[oldBest[c]], slices.Min(was))
		}
		if w.best[c] == oldBest[c] || rates[w.best[c]] <= slices.Max(was) {
			t.Errorf("%s: best is %d at %v, was %d at %v", c, w.best[c], rates[w.best[c]], oldBest[c], slices.Max(was))
		}
		sorted := slices.Sorted(slices.Values(rates))
		if got, want := w.oracle[c], sorted[11]+sorted[10]+sorted[9]; math.Abs(got-want) > 1e-12 {
			t.Errorf("%s: oracle %v, want %v", c, got, want)
		}
	}
	if m := stat(w.ctr["search"]) / stat(w.ctr["home"]); m < 2 {
		t.Errorf("search's items do %.1f times as well as home's, want about 4", m)
	}
	for range 5 {
		n := w.addItem()
		if w.items[n] != "sku-"+strconv.Itoa(n) || len(w.ctr["home"]) != n+1 || len(w.ctr["search"]) != n+1 {
			t.Fatalf("item %d: %v, %d and %d rates", n, w.items[n], len(w.ctr["home"]), len(w.ctr["search"]))
		}
	}
	if w.initial != 12 || len(w.items) != 17 {
		t.Fatalf("%d items at the start, %d now", w.initial, len(w.items))
	}
	var sum float64
	for _, r := range w.ctr["home"] {
		sum += r
	}
	if got, want := w.uniform["home"], 3*sum/17; math.Abs(got-want) > 1e-12 {
		t.Fatalf("uniform %v, want %v over the grown catalogue", got, want)
	}
}

func stat(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
