package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
)

// world is the simulated catalogue: every (context, item) has a hidden
// click rate, and a click becomes an order with orderRate.
type world struct {
	contexts  []string
	items     []string
	ctr       map[string][]float64 // context → click rate by item
	orderRate float64
	k         int
	// oracle is, per context, the expected clicks of the k items with the
	// highest rates; uniform the expected clicks of k items at random.
	oracle, uniform map[string]float64
	best            map[string]int // item with the highest rate
}

// newWorld draws click rates from Beta(1, 25)-like tails (most items 1–8%,
// a few far better), fixed by seed.
func newWorld(seed uint64, contexts []string, items, k int) *world {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	w := &world{contexts: contexts, ctr: map[string][]float64{}, orderRate: 0.2, k: min(k, items),
		oracle: map[string]float64{}, uniform: map[string]float64{}, best: map[string]int{}}
	for i := 0; i < items; i++ {
		w.items = append(w.items, "sku-"+strconv.Itoa(i))
	}
	for _, c := range contexts {
		rates := make([]float64, items)
		for i := range rates {
			// 1 − U^(1/25) is Beta(1, 25): mean 3.8%, long right tail.
			rates[i] = 1 - math.Pow(r.Float64(), 1.0/25)
		}
		w.ctr[c] = rates
		sorted := slices.Clone(rates)
		sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
		for _, x := range sorted[:w.k] {
			w.oracle[c] += x
		}
		var sum float64
		for _, x := range rates {
			sum += x
		}
		w.uniform[c] = float64(w.k) * sum / float64(items)
		w.best[c] = slices.Index(rates, sorted[0])
	}
	return w
}

// itemIndex maps "sku-<n>" back to n.
func (w *world) itemIndex(id string) (int, error) {
	n, err := strconv.Atoi(id[len("sku-"):])
	if err != nil || n < 0 || n >= len(w.items) || w.items[n] != id {
		return 0, fmt.Errorf("unknown item %q", id)
	}
	return n, nil
}

// expected returns the expected clicks of showing items in context c.
func (w *world) expected(c string, items []int) float64 {
	var s float64
	for _, i := range items {
		s += w.ctr[c][i]
	}
	return s
}
