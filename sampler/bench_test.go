package sampler

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// Benchmarks compare with gonum's distuv.Beta, each with its own source, in
// the same run: `make bench` prints the benchstat table with the gonum
// column as the baseline.
//
//	mix=ctr    α ~ U[1, 500], β ~ U[1, 50000]  (click-through posteriors)
//	mix=small  α, β ~ U(0.1, 5)
//
//	impl=gonum     distuv.Beta{Alpha, Beta, Src}.Rand()
//	impl=raw       NewArm(α, β) and one draw: includes the per-arm set-up
//	impl=prepared  one draw from an Arm prepared beforehand, as the scorer's
//	               cache keeps them

const mixSize = 4096

func mix(name string) (alpha, beta []float64) {
	r := rand.New(rand.NewPCG(1, 2))
	alpha, beta = make([]float64, mixSize), make([]float64, mixSize)
	for i := range alpha {
		switch name {
		case "ctr":
			alpha[i] = 1 + 499*r.Float64()
			beta[i] = 1 + 49999*r.Float64()
		case "small":
			alpha[i] = 0.1 + 4.9*r.Float64()
			beta[i] = 0.1 + 4.9*r.Float64()
		}
	}
	return alpha, beta
}

var sink float64

func BenchmarkBeta(b *testing.B) {
	for _, m := range []string{"ctr", "small"} {
		alpha, beta := mix(m)
		arms := make([]Arm, mixSize)
		for i := range arms {
			arms[i], _ = NewArm(alpha[i], beta[i])
		}
		b.Run("mix="+m+"/impl=gonum", func(b *testing.B) {
			b.ReportAllocs()
			src := rand.NewPCG(3, 4)
			var s float64
			for i := 0; i < b.N; i++ {
				j := i & (mixSize - 1)
				s += distuv.Beta{Alpha: alpha[j], Beta: beta[j], Src: src}.Rand()
			}
			sink = s
		})
		b.Run("mix="+m+"/impl=raw", func(b *testing.B) {
			b.ReportAllocs()
			r := NewRand(3)
			var s float64
			for i := 0; i < b.N; i++ {
				j := i & (mixSize - 1)
				arm, _ := NewArm(alpha[j], beta[j])
				s += r.Beta(&arm)
			}
			sink = s
		})
		b.Run("mix="+m+"/impl=prepared", func(b *testing.B) {
			b.ReportAllocs()
			r := NewRand(3)
			out := make([]float64, mixSize)
			b.ResetTimer()
			// Batches of the whole mix, counted per draw.
			for done := 0; done < b.N; done += mixSize {
				n := min(mixSize, b.N-done)
				r.Thompson(arms[:n], out)
			}
			sink = out[0]
		})
	}
}

// One request: 400 candidates, top 20, sampling included. ns/candidate is
// the figure of interest.
func BenchmarkRank(b *testing.B) {
	const n, k = 400, 20
	alpha, beta := mix("ctr")
	b.Run("top20of400/impl=gonum", func(b *testing.B) {
		b.ReportAllocs()
		src := rand.NewPCG(3, 4)
		type scored struct {
			i int
			s float64
		}
		buf := make([]scored, n)
		for i := 0; i < b.N; i++ {
			off := (i * n) & (mixSize - 1)
			for j := range buf {
				c := (off + j) & (mixSize - 1)
				buf[j] = scored{j, distuv.Beta{Alpha: alpha[c], Beta: beta[c], Src: src}.Rand()}
			}
			sort.Slice(buf, func(x, y int) bool { return buf[x].s > buf[y].s })
			sink = buf[k-1].s
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/candidate")
	})
	arms := make([]Arm, mixSize+n)
	for i := range arms {
		arms[i], _ = NewArm(alpha[i&(mixSize-1)], beta[i&(mixSize-1)])
	}
	b.Run("top20of400/impl=prepared", func(b *testing.B) {
		b.ReportAllocs()
		var rk Ranker
		dst := make([]Ranked, 0, k)
		for i := 0; i < b.N; i++ {
			off := (i * n) & (mixSize - 1)
			dst = rk.Rank(arms[off:off+n], k, Thompson, uint64(i), dst)
		}
		sink = dst[0].Score
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/candidate")
	})
}

// BenchmarkPropensities is a request's ranking (400 candidates, k = 20)
// without propensities (impl=off) and with them at 100 and 1,000 Monte
// Carlo draws: what asking for propensities costs a request.
func BenchmarkPropensities(b *testing.B) {
	const n, k = 400, 20
	alpha, beta := mix("ctr")
	arms := make([]Arm, mixSize+n)
	for i := range arms {
		arms[i], _ = NewArm(alpha[i&(mixSize-1)], beta[i&(mixSize-1)])
	}
	for _, draws := range []int{0, 100, 1000} {
		name := "top20of400/impl=off"
		if draws > 0 {
			name = fmt.Sprintf("top20of400/impl=draws-%d", draws)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var rk Ranker
			dst := make([]Ranked, 0, k)
			var slot, topK []float64
			for i := 0; i < b.N; i++ {
				off := (i * n) & (mixSize - 1)
				dst = rk.Rank(arms[off:off+n], k, Thompson, uint64(i), dst)
				if draws > 0 {
					slot, topK = rk.Propensities(arms[off:off+n], dst, Thompson, draws, uint64(i), slot, topK)
				}
			}
			sink = dst[0].Score
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/request")
		})
	}
}

func BenchmarkTopK(b *testing.B) {
	r := NewRand(1)
	scores := make([]float64, 400)
	for i := range scores {
		scores[i] = r.Float64()
	}
	dst := make([]Ranked, 0, 20)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		dst = TopK(scores, 20, dst)
	}
	sink = dst[0].Score
}
