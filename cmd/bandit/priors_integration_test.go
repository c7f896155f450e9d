package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
)

// Two contexts, "low" whose items click at 1–3% and "high" at 25–35%
// (30 items each, 300 impressions an item), counted by bandit-ingest. A
// bandit-score with -prior context starts a new item of "low" below a new
// item of "high", each near its context's rate, and says which prior it
// used; the scorer with the global prior starts both at Beta(1, 1)'s 0.5.
func TestContextPriorsStartNewItemsAtTheirContextsRate(t *testing.T) {
	e := newCLIEnv(t)
	rates := map[string][2]float64{"low": {0.01, 0.03}, "high": {0.25, 0.35}}
	rng := rand.New(rand.NewPCG(5, 6))
	now := time.Now().Add(-time.Hour).UnixMilli()
	var evs []*schemas.Interaction
	for _, c := range []string{"low", "high"} {
		for i := range 30 {
			item := fmt.Sprintf("%s-%d", c, i)
			rate := rates[c][0] + (rates[c][1]-rates[c][0])*float64(i)/29
			for j := range 300 {
				evs = append(evs, clicked(fmt.Sprint("u", rng.IntN(50)), c, item, j, now+int64(j), rng.Float64() < rate)...)
			}
		}
	}
	e.ingest(t, evs)

	requests := stacktest.CreateTopic(t, e.brokers, "it_priors_requests", 1)
	stacktest.CreateTopicNamed(t, e.brokers, requests+".dlq", 1)
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil, append(slices.Clone(e.scoreArgs),
		"-topic", requests, "-group", stacktest.UniqueName("it_priors_score"), "-prior", "context", "-prior-refresh", "2s")...)

	// The mean of a new item in context c, and the model version, as the
	// scorer on topic answers.
	newItem := func(topic, c string) (float64, string, schemas.PosteriorSource) {
		out, errOut, code := e.bandit(t, "", "score", "-requests-topic", topic, "-user", "probe", "-context", c,
			"-candidates", "brand-new-"+c+","+c+"-0", "-k", "2", "-mode", "mean", "-explain", "-timeout", "30s", "-json")
		if code != 0 {
			t.Fatalf("score: exit %d\n%s\n%s", code, out, errOut)
		}
		var resp schemas.ScoreResponse
		if err := schemas.JSON.DecodeScoreResponse(schemas.DefaultLimits(), []byte(strings.TrimSpace(out)), &resp); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, it := range resp.GetItems() {
			if it.GetItemId() == "brand-new-"+c {
				return it.GetMean(), resp.GetModelVersion(), it.GetExplanation().GetSource()
			}
		}
		t.Fatalf("no new item in %s", out)
		return 0, "", 0
	}
	var low, high float64
	var lowVersion, highVersion string
	for deadline := time.Now().Add(time.Minute); ; {
		var src schemas.PosteriorSource
		low, lowVersion, src = newItem(requests, "low")
		high, highVersion, _ = newItem(requests, "high")
		if strings.Contains(lowVersion, ";prior=context:") && strings.Contains(highVersion, ";prior=context:") {
			if src != schemas.SourcePrior {
				t.Fatalf("the new item's source is %v, want the prior", src)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fitted prior after a minute: versions %q, %q", lowVersion, highVersion)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("a new item starts at %.4f in low (%s), %.4f in high (%s)", low, lowVersion, high, highVersion)
	if !(low < high) || math.Abs(low-0.02) > 0.01 || math.Abs(high-0.30) > 0.04 {
		t.Fatalf("new items start at %.4f (low) and %.4f (high); want about 0.02 and 0.30", low, high)
	}
	for _, c := range []string{"low", "high"} {
		if m, version, _ := newItem(e.requests, c); m != 0.5 || !strings.HasPrefix(version, "beta(1,1)") || strings.Contains(version, ";prior=") {
			t.Fatalf("with the global prior, a new item of %s: mean %v, version %q", c, m, version)
		}
	}
	fit, err := e.rdb.HGetAll(context.Background(), e.prefix+":priors").Result()
	if err != nil || len(fit) != 3 {
		t.Fatalf("the shared fit: %q, %v; want two contexts and the time", fit, err)
	}
}
