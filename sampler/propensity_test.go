package sampler

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// integrate is Simpson's rule of f over [0, 1] on n (even) intervals.
func integrate(f func(float64) float64, n int) float64 {
	h := 1 / float64(n)
	s := f(0) + f(1)
	for i := 1; i < n; i++ {
		w := 2.0
		if i%2 == 1 {
			w = 4
		}
		s += w * f(float64(i)*h)
	}
	return s * h / 3
}

// exactTop1 is the probability that arm i draws the highest of all:
// ∫ f_i(x) Π_{j≠i} F_j(x) dx. exactLast that it draws the lowest.
func exactTop1(betas []distuv.Beta, i int) float64 {
	return integrate(func(x float64) float64 {
		p := betas[i].Prob(x)
		for j, b := range betas {
			if j != i {
				p *= b.CDF(x)
			}
		}
		return p
	}, 20_000)
}

func exactLast(betas []distuv.Beta, i int) float64 {
	return integrate(func(x float64) float64 {
		p := betas[i].Prob(x)
		for j, b := range betas {
			if j != i {
				p *= 1 - b.CDF(x)
			}
		}
		return p
	}, 20_000)
}

// For two and three arms with known posteriors, the Monte Carlo
// propensities match the exact probabilities (numerical integration of the
// Beta densities): the top-1 propensity of the item ranked first, and, of
// three arms with k = 2, each shown item's probability of being in the
// top 2 (one less the probability of drawing last). The bound is four
// standard errors of the estimate, √(p(1−p)/draws), plus 1e-4 for the
// integration.
func TestPropensitiesMatchTheExactProbabilities(t *testing.T) {
	const draws = 200_000
	for _, tc := range []struct {
		name  string
		shape [][2]float64
		k     int
	}{
		{"two arms, close", [][2]float64{{12, 88}, {10, 90}}, 1},
		{"two arms, apart", [][2]float64{{30, 70}, {5, 95}}, 1},
		{"three arms", [][2]float64{{3, 7}, {20, 60}, {1, 1}}, 2},
		{"three arms, one sure", [][2]float64{{50, 50}, {40, 60}, {2, 30}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arms := make([]Arm, len(tc.shape))
			betas := make([]distuv.Beta, len(tc.shape))
			for i, s := range tc.shape {
				var err error
				if arms[i], err = NewArm(s[0], s[1]); err != nil {
					t.Fatal(err)
				}
				betas[i] = distuv.Beta{Alpha: s[0], Beta: s[1]}
			}
			var rk Ranker
			for seed := range uint64(3) {
				ranked := rk.Rank(arms, tc.k, Thompson, seed, nil)
				slot, topK := rk.Propensities(arms, ranked, Thompson, draws, seed, nil, nil)
				first := ranked[0].Index
				want := exactTop1(betas, first)
				if tol := 4 * math.Sqrt(want*(1-want)/draws); math.Abs(slot[0]-want) > tol+1e-4 {
					t.Errorf("seed %d: top-1 propensity of arm %d is %.5f, exact %.5f (±%.5f)", seed, first, slot[0], want, tol)
				}
				if tc.k == 2 && len(tc.shape) == 3 {
					for i, r := range ranked {
						want := 1 - exactLast(betas, r.Index)
						if tol := 4 * math.Sqrt(want*(1-want)/draws); math.Abs(topK[i]-want) > tol+1e-4 {
							t.Errorf("seed %d: top-2 propensity of arm %d is %.5f, exact %.5f (±%.5f)", seed, r.Index, topK[i], want, tol)
						}
					}
				}
				// The same seed gives the same estimates.
				again, _ := rk.Propensities(arms, ranked, Thompson, draws, seed, nil, nil)
				if again[0] != slot[0] {
					t.Fatalf("seed %d: %v then %v", seed, slot[0], again[0])
				}
			}
		})
	}
}

// Never 0 for a shown item, even when its chance is tiny; 1 in Mean mode;
// and at most 1 everywhere, the top-k one at least the slot one.
func TestPropensitiesBounds(t *testing.T) {
	arms := []Arm{DefaultPrior.Arm(1000, 900), DefaultPrior.Arm(1000, 1), DefaultPrior.Arm(1000, 2)}
	var rk Ranker
	// Ranking the unlikely arm first, as a logged decision might (a
	// ranking by another policy, evaluated under this one).
	ranked := []Ranked{{Index: 2}, {Index: 0}}
	slot, topK := rk.Propensities(arms, ranked, Thompson, 1000, 7, nil, nil)
	if slot[0] != 1.0/1000 || topK[0] <= 0 {
		t.Fatalf("an unlikely shown item: slot %v, top-k %v; want 1/1000", slot[0], topK[0])
	}
	// The sure item is always first, so never second, but always shown.
	if slot[1] <= 0 || topK[1] != 1 {
		t.Fatalf("the sure item shown second: slot %v, top-k %v", slot[1], topK[1])
	}
	slot, topK = rk.Propensities(arms, rk.Rank(arms, 2, Mean, 0, nil), Mean, 1000, 7, slot, topK)
	if slot[0] != 1 || slot[1] != 1 || topK[0] != 1 || topK[1] != 1 {
		t.Fatalf("mean mode: %v %v", slot, topK)
	}
}

// Inverse propensity weighting needs E[1[shown]/propensity] = 1 for an
// item whatever its chance: over 60,000 seeded rankings of two arms, the
// second first in about 0.6% of them, the weights of its wins average 1
// within 0.15 (three standard errors). Counting the logged ranking among
// the draws biased this down to about 0.7 (each win's propensity raised by
// about 1/draws).
func TestPropensitiesWeighWinsRight(t *testing.T) {
	arms := []Arm{mustArm(t, 100, 100), mustArm(t, 35, 65)}
	exact := exactTop1([]distuv.Beta{{Alpha: 100, Beta: 100}, {Alpha: 35, Beta: 65}}, 1)
	var rk Ranker
	const n, draws = 60_000, 200
	var sum float64
	wins := 0
	for seed := range uint64(n) {
		ranked := rk.Rank(arms, 1, Thompson, seed, nil)
		if ranked[0].Index != 1 {
			continue
		}
		wins++
		slot, _ := rk.Propensities(arms, ranked, Thompson, draws, seed, nil, nil)
		sum += 1 / slot[0]
	}
	mean := sum / n
	t.Logf("second arm first in %d of %d rankings (exact chance %.4f); mean weight %.3f", wins, n, exact, mean)
	if wins < 200 || mean < 0.85 || mean > 1.15 {
		t.Fatalf("mean inverse-propensity weight %.3f over %d wins, want about 1", mean, wins)
	}
}

func mustArm(t *testing.T, a, b float64) Arm {
	t.Helper()
	arm, err := NewArm(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return arm
}
