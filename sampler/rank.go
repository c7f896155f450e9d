package sampler

import "fmt"

// Mode is how a ranking explores.
type Mode uint8

// The modes.
const (
	// Thompson ranks by one posterior draw per candidate.
	Thompson Mode = iota
	// Mean ranks by posterior mean: exploit only.
	Mean
)

func (m Mode) String() string {
	switch m {
	case Thompson:
		return "thompson"
	case Mean:
		return "mean"
	default:
		return fmt.Sprintf("Mode(%d)", uint8(m))
	}
}

// Ranker ranks candidates. It owns its random source and its buffers, so a
// worker that keeps one ranks without allocating once the buffers have grown
// to the largest request. It is not safe for concurrent use.
type Ranker struct {
	rng    Rand
	scores []float64
	// Propensities' buffers.
	pos  []int32
	draw []Ranked
}

// Rank appends the top k of arms to dst[:0], best first, and returns it.
// In Thompson mode the draws come from a generator seeded with seed, so the
// same arms and seed give the same ranking; Mean mode ignores the seed.
// Scores are the sampled value (Thompson) or the posterior mean (Mean).
func (rk *Ranker) Rank(arms []Arm, k int, mode Mode, seed uint64, dst []Ranked) []Ranked {
	if cap(rk.scores) < len(arms) {
		rk.scores = make([]float64, len(arms), len(arms)+len(arms)/4)
	}
	scores := rk.scores[:len(arms)]
	if mode == Mean {
		Means(arms, scores)
	} else {
		rk.rng.Seed(seed)
		rk.rng.Thompson(arms, scores)
	}
	return TopK(scores, k, dst)
}
