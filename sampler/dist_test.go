package sampler

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// The distribution tests use fixed seeds, so they are deterministic; their
// thresholds (|z| < 5, KS at p = 1e-4) would reject a correct sampler with
// a fresh seed only about once in ten thousand runs.

const (
	nDraws  = 1_000_000
	zLimit  = 5.0
	ksCoeff = 2.13 // Kolmogorov distribution: P(√n·D > 2.13) ≈ 1e-4
)

var betaCases = [][2]float64{
	{0.1, 0.1}, {0.5, 0.5}, {1, 1}, {2, 5}, {0.2, 3}, {4.5, 0.15},
	{1, 50000}, {100, 20000}, {500, 50000}, {250, 1},
}

// rawMoment is E[X^k] of Beta(a, b).
func rawMoment(a, b float64, k int) float64 {
	m := 1.0
	for i := 0; i < k; i++ {
		m *= (a + float64(i)) / (a + b + float64(i))
	}
	return m
}

type betaCheck struct {
	zMean, zVar float64
	ks, ksLimit float64
	zTop        float64 // binomial z of the mass above 1−1e-9
}

// checkBeta draws nDraws from draw and compares them with Beta(a, b):
// mean and variance z-scores, a Kolmogorov–Smirnov distance against the
// exact CDF on x ≤ 1−1e-9, and a binomial z-score for the mass above, which
// float64 partly rounds to exactly 1.
func checkBeta(a, b float64, draw func() float64) betaCheck {
	const top = 1 - 1e-9
	xs := make([]float64, nDraws)
	var sum, sum2 float64
	nTop := 0
	nan := false
	for i := range xs {
		x := draw()
		nan = nan || !(x >= 0 && x <= 1)
		xs[i] = x
		sum += x
		sum2 += x * x
		if x > top {
			nTop++
		}
	}
	n := float64(nDraws)
	m1, m2, m3, m4 := rawMoment(a, b, 1), rawMoment(a, b, 2), rawMoment(a, b, 3), rawMoment(a, b, 4)
	variance := m2 - m1*m1
	mu4 := m4 - 4*m1*m3 + 6*m1*m1*m2 - 3*m1*m1*m1*m1
	mean := sum / n
	sampleVar := (sum2 - n*mean*mean) / (n - 1)
	var c betaCheck
	c.zMean = (mean - m1) / math.Sqrt(variance/n)
	c.zVar = (sampleVar - variance) / math.Sqrt((mu4-variance*variance)/n)

	dist := distuv.Beta{Alpha: a, Beta: b}
	pTop := 1 - dist.CDF(top)
	c.zTop = (float64(nTop) - n*pTop) / math.Sqrt(math.Max(n*pTop*(1-pTop), 1e-300))
	if nTop == 0 && pTop*n < 1e-6 {
		c.zTop = 0
	}

	slices.Sort(xs)
	below := xs[:nDraws-nTop]
	m := float64(len(below))
	fTop := 1 - pTop
	var d float64
	for i, x := range below {
		f := dist.CDF(x) / fTop
		d = math.Max(d, math.Max(f-float64(i)/m, float64(i+1)/m-f))
	}
	c.ks = d
	c.ksLimit = ksCoeff / math.Sqrt(m)
	if nan {
		c.ks = math.Inf(1) // a draw outside [0, 1] (or NaN) fails outright
	}
	return c
}

func (c betaCheck) failures() []string {
	var out []string
	if math.Abs(c.zMean) > zLimit {
		out = append(out, fmt.Sprintf("mean z = %.2f", c.zMean))
	}
	if math.Abs(c.zVar) > zLimit {
		out = append(out, fmt.Sprintf("variance z = %.2f", c.zVar))
	}
	if c.ks > c.ksLimit {
		out = append(out, fmt.Sprintf("KS D = %.5f > %.5f", c.ks, c.ksLimit))
	}
	if math.Abs(c.zTop) > zLimit {
		out = append(out, fmt.Sprintf("mass above 1-1e-9: binomial z = %.2f", c.zTop))
	}
	return out
}

func TestBetaDistribution(t *testing.T) {
	if testing.Short() {
		t.Skip("10^6 draws per case")
	}
	for i, p := range betaCases {
		t.Run(fmt.Sprintf("Beta(%g,%g)", p[0], p[1]), func(t *testing.T) {
			t.Parallel()
			arm, err := NewArm(p[0], p[1])
			if err != nil {
				t.Fatal(err)
			}
			r := NewRand(uint64(1000 + i))
			c := checkBeta(p[0], p[1], func() float64 { return r.Beta(&arm) })
			if f := c.failures(); len(f) > 0 {
				t.Errorf("draws do not follow Beta(%g, %g): %v", p[0], p[1], f)
			}
			t.Logf("z(mean)=%.2f z(var)=%.2f KS=%.5f (limit %.5f) z(top)=%.2f", c.zMean, c.zVar, c.ks, c.ksLimit, c.zTop)
		})
	}
}

// The checks above have power: a sampler with α and β swapped, and one
// that draws its gammas without the shape < 1 boost, are rejected.
func TestBetaChecksRejectWrongSamplers(t *testing.T) {
	if testing.Short() {
		t.Skip("10^6 draws per case")
	}
	wrong := []struct {
		name string
		a, b float64
		draw func(r *Rand) func() float64
	}{
		{"swapped α and β", 2, 5, func(r *Rand) func() float64 {
			arm, _ := NewArm(5, 2)
			return func() float64 { return r.Beta(&arm) }
		}},
		{"swapped, ctr-like", 100, 20000, func(r *Rand) func() float64 {
			arm, _ := NewArm(20000, 100)
			return func() float64 { return r.Beta(&arm) }
		}},
		{"no boost for shape < 1", 0.5, 0.5, func(r *Rand) func() float64 {
			return func() float64 {
				x := r.gamma(0.5-1.0/3, 1/(3*math.Sqrt(0.5-1.0/3)))
				y := r.gamma(0.5-1.0/3, 1/(3*math.Sqrt(0.5-1.0/3)))
				return x / (x + y)
			}
		}},
		{"slightly off shape", 100, 20000, func(r *Rand) func() float64 {
			arm, _ := NewArm(103, 20000)
			return func() float64 { return r.Beta(&arm) }
		}},
	}
	for _, w := range wrong {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			c := checkBeta(w.a, w.b, w.draw(NewRand(7)))
			if len(c.failures()) == 0 {
				t.Errorf("a wrong sampler passed the Beta(%g, %g) checks: %+v", w.a, w.b, c)
			}
		})
	}
}

// ks is the Kolmogorov–Smirnov distance of n draws from cdf.
func ks(n int, draw func() float64, cdf func(float64) float64) float64 {
	xs := make([]float64, n)
	for i := range xs {
		if xs[i] = draw(); math.IsNaN(xs[i]) {
			return math.Inf(1)
		}
	}
	slices.Sort(xs)
	var d float64
	for i, x := range xs {
		f := cdf(x)
		d = math.Max(d, math.Max(f-float64(i)/float64(n), float64(i+1)/float64(n)-f))
	}
	return d
}

func TestNormExpGammaDistributions(t *testing.T) {
	if testing.Short() {
		t.Skip("10^6 draws per case")
	}
	limit := ksCoeff / math.Sqrt(nDraws)
	r := NewRand(42)
	cases := []struct {
		name string
		draw func() float64
		cdf  func(float64) float64
	}{
		{"normal", r.Norm, func(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }},
		{"exponential", r.Exp, func(x float64) float64 { return -math.Expm1(-x) }},
		{"uniform", r.Float64, func(x float64) float64 { return x }},
	}
	for _, shape := range []float64{0.05, 0.5, 1, 3.7, 1000, 1e6} {
		g := distuv.Gamma{Alpha: shape, Beta: 1}
		cases = append(cases, struct {
			name string
			draw func() float64
			cdf  func(float64) float64
		}{fmt.Sprintf("gamma(%g)", shape), func() float64 { return r.Gamma(shape) }, g.CDF})
	}
	for _, tc := range cases {
		d := ks(nDraws, tc.draw, tc.cdf)
		if d > limit {
			t.Errorf("%s: KS distance %.5f > %.5f", tc.name, d, limit)
		}
	}
	// The normal's tail beyond the ziggurat's base: P(|Z| > 3.4426) = 5.76e-4.
	n, tail := 0, 0
	for ; n < nDraws; n++ {
		if math.Abs(r.Norm()) > zigNormR {
			tail++
		}
	}
	p := math.Erfc(zigNormR / math.Sqrt2)
	if z := (float64(tail) - nDraws*p) / math.Sqrt(nDraws*p*(1-p)); math.Abs(z) > zLimit {
		t.Errorf("normal tail mass: %d draws beyond %.4f, want %.0f (z = %.2f)", tail, zigNormR, nDraws*p, z)
	}
}
