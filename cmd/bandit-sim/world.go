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
	// initial is the catalogue's size at the start: items past it arrived
	// during the run (scenario new-items).
	initial int
	r       *rand.Rand
	// level scales each context's rates (1 but in scenario new-items,
	// where contexts differ in how well their items do).
	level map[string]float64
}

// newWorld draws click rates from Beta(1, 25)-like tails (most items 1–8%,
// a few far better), fixed by seed. With levels, context i's rates are
// scaled by levels[i] (capped at 0.9).
func newWorld(seed uint64, contexts []string, items, k int, levels ...float64) *world {
	w := &world{contexts: contexts, ctr: map[string][]float64{}, orderRate: 0.2, k: min(k, items),
		oracle: map[string]float64{}, uniform: map[string]float64{}, best: map[string]int{},
		initial: items, r: rand.New(rand.NewPCG(seed, seed^0x5eed)), level: map[string]float64{}}
	for i, c := range contexts {
		w.level[c] = 1
		if i < len(levels) {
			w.level[c] = levels[i]
		}
	}
	for i := range items {
		w.items = append(w.items, "sku-"+strconv.Itoa(i))
	}
	for _, c := range contexts {
		for range items {
			w.ctr[c] = append(w.ctr[c], w.rate(c))
		}
	}
	w.recompute()
	return w
}

// rate draws a click rate in context c: 1 − U^(1/25) is Beta(1, 25), mean
// 3.8% with a long right tail, scaled by the context's level.
func (w *world) rate(c string) float64 {
	return min(w.level[c]*(1-math.Pow(w.r.Float64(), 1.0/25)), 0.9)
}

// addItem adds an item to the catalogue, with a rate in each context, and
// returns its index.
func (w *world) addItem() int {
	n := len(w.items)
	w.items = append(w.items, "sku-"+strconv.Itoa(n))
	for _, c := range w.contexts {
		w.ctr[c] = append(w.ctr[c], w.rate(c))
	}
	w.recompute()
	return n
}

// switchBest makes each context's best item one of its worst, and an item
// of the middle the best by as much: the catalogue drifts.
func (w *world) switchBest() {
	for _, c := range w.contexts {
		rates := w.ctr[c]
		order := make([]int, len(rates))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(a, b int) bool { return rates[order[a]] > rates[order[b]] })
		best, second, mid, worst := order[0], order[min(1, len(order)-1)], order[len(order)/2], order[len(order)-1]
		top := rates[best]
		rates[mid] = min(top+(top-rates[second])+0.02, 0.9)
		rates[best] = rates[worst]
	}
	w.recompute()
}

// recompute sets the oracle, uniform and best figures from the rates.
func (w *world) recompute() {
	k := min(w.k, len(w.items))
	for _, c := range w.contexts {
		rates := w.ctr[c]
		sorted := slices.Clone(rates)
		sort.Sort(sort.Reverse(sort.Float64Slice(sorted)))
		w.oracle[c] = 0
		for _, x := range sorted[:k] {
			w.oracle[c] += x
		}
		var sum float64
		for _, x := range rates {
			sum += x
		}
		w.uniform[c] = float64(k) * sum / float64(len(rates))
		w.best[c] = slices.Index(rates, sorted[0])
	}
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
