package main

import (
	"math"
	"slices"
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
