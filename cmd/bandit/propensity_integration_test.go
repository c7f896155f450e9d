package main

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/integrate"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/banditstream/banditstream/schemas"
)

// Three arms counted by bandit-ingest (100 impressions each, 30, 25 and 5
// clicks: Beta(31, 71), Beta(26, 76), Beta(6, 96) under the default
// prior), ranked by bandit-score with propensities: for several seeds, the
// top-1 propensity of the item ranked first matches the exact probability
// that it draws highest (the Beta densities integrated numerically)
// within four standard errors of the scorer's 1,000 draws.
func TestPropensitiesOnTheStack(t *testing.T) {
	e := newCLIEnv(t)
	clicks := map[string]int{"p-a": 30, "p-b": 25, "p-c": 5}
	now := time.Now().Add(-time.Hour).UnixMilli()
	var evs []*schemas.Interaction
	for item, c := range clicks {
		for j := range 100 {
			evs = append(evs, clicked(fmt.Sprint("u", j%7), "p", item, j, now+int64(j), j < c)...)
		}
	}
	e.ingest(t, evs)

	beta := map[string]distuv.Beta{}
	for item, c := range clicks {
		beta[item] = distuv.Beta{Alpha: float64(1 + c), Beta: float64(1 + 100 - c)}
	}
	exact := func(first string) float64 {
		const n = 20_000
		xs, ys := make([]float64, n+1), make([]float64, n+1)
		for i := range xs {
			x := float64(i) / n
			y := beta[first].Prob(x)
			for item, b := range beta {
				if item != first {
					y *= b.CDF(x)
				}
			}
			xs[i], ys[i] = x, y
		}
		return integrate.Simpsons(xs, ys)
	}
	for seed := range 4 {
		out, errOut, code := e.bandit(t, "", "score", "-requests-topic", e.requests, "-user", "probe", "-context", "p",
			"-candidates", "p-a,p-b,p-c", "-k", "3", "-seed", fmt.Sprint(seed), "-propensities", "-timeout", "30s", "-json")
		if code != 0 {
			t.Fatalf("score: exit %d\n%s\n%s", code, out, errOut)
		}
		var resp schemas.ScoreResponse
		if err := schemas.JSON.DecodeScoreResponse(schemas.DefaultLimits(), []byte(strings.TrimSpace(out)), &resp); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		first := resp.GetItems()[0]
		want := exact(first.GetItemId())
		tol := 4*math.Sqrt(want*(1-want)/1001) + 1e-3
		t.Logf("seed %d: %s first, propensity %.4f, exact %.4f (±%.4f)", seed, first.GetItemId(), first.GetPropensity(), want, tol)
		if math.Abs(first.GetPropensity()-want) > tol {
			t.Errorf("seed %d: %s's top-1 propensity %.4f, exact %.4f", seed, first.GetItemId(), first.GetPropensity(), want)
		}
		for _, it := range resp.GetItems() {
			if it.GetTopkPropensity() != 1 { // k = every candidate
				t.Errorf("seed %d: %s in the top 3 of 3 with propensity %v", seed, it.GetItemId(), it.GetTopkPropensity())
			}
		}
	}
}
