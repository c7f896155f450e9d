package sampler

// Propensities estimates, for a ranking Rank returned, the probability
// that the same policy puts each ranked item where it is: slot[i] the
// probability that ranked[i] is drawn at position i, topK[i] that it is
// among the first len(ranked). Thompson sampling has no closed form for
// either; they are estimated by Monte Carlo over draws further rankings
// of the same posteriors, seeded from seed (the same arms, ranking, draws
// and seed give the same estimates), independent of the ranking itself:
// counting the ranking as one of them would bias every shown item's
// propensity up by about 1/draws, since it is shown because it was drawn.
// The standard error of each is at most 1/(2·√draws). An item no further
// draw puts in its slot gets 1/draws rather than 0: a shown item's
// propensity is never 0, and it is overestimated only where it is below
// about 1/draws. In Mean mode the ranking is deterministic and both are 1.
//
// slot and topK are appended to from [:0] and returned.
func (rk *Ranker) Propensities(arms []Arm, ranked []Ranked, mode Mode, draws int, seed uint64, slot, topK []float64) ([]float64, []float64) {
	k := len(ranked)
	slot, topK = grow(slot, k), grow(topK, k)
	if mode == Mean || draws <= 0 {
		// Deterministic; or, with no further draws, the ranking alone.
		for i := range slot {
			slot[i], topK[i] = 1, 1
		}
		return slot, topK
	}
	// pos maps a candidate to its place in the ranking (+1; 0: not shown).
	if cap(rk.pos) < len(arms) {
		rk.pos = make([]int32, len(arms), len(arms)+len(arms)/4)
	}
	pos := rk.pos[:len(arms)]
	clear(pos)
	for i, r := range ranked {
		pos[r.Index] = int32(i + 1)
		slot[i], topK[i] = 0, 0
	}
	if cap(rk.scores) < len(arms) {
		rk.scores = make([]float64, len(arms), len(arms)+len(arms)/4)
	}
	scores := rk.scores[:len(arms)]
	// Another stream than the ranking's own draw.
	rk.rng.Seed(seed ^ 0x9e3779b97f4a7c15)
	for range draws {
		rk.rng.Thompson(arms, scores)
		rk.draw = TopK(scores, k, rk.draw)
		for j, r := range rk.draw {
			if p := pos[r.Index]; p > 0 {
				topK[p-1]++
				if int(p-1) == j {
					slot[j]++
				}
			}
		}
	}
	n := float64(draws)
	for i := range slot {
		slot[i] = max(slot[i], 1) / n
		topK[i] = max(topK[i], 1) / n
	}
	return slot, topK
}

func grow(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}
