package consumers_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
)

// scoreEnvOn is a scorer's environment on a namespace another process
// writes: fresh request and result topics, the namespace's hot tier.
func scoreEnvOn(t *testing.T, ie *ingestEnv, prefix string, halfLife time.Duration) *scoreEnv {
	t.Helper()
	e := &scoreEnv{brokers: ie.brokers, redis: ie.redis, cql: ie.cql, prefix: prefix, keyspace: ie.keyspace, rdb: ie.rdb}
	e.requests = stacktest.CreateTopic(t, e.brokers, "it_requests", 1)
	stacktest.CreateTopicNamed(t, e.brokers, e.requests+schemas.DeadLetterSuffix, 1)
	e.results = stacktest.CreateTopic(t, e.brokers, "it_results", 1)
	e.group = stacktest.UniqueName("it_scorer")
	var err error
	if e.hot, err = hot.New(e.rdb, hot.Keys{Prefix: prefix, Shards: 64, HalfLife: halfLife}); err != nil {
		t.Fatal(err)
	}
	cold, _ := stacktest.OpenCold(t, e.keyspace, prefix, false)
	if e.tier, err = store.NewTier(e.hot, cold, store.TierConfig{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// The best item switches: for ten days sku-a clicks at 10% and sku-b at
// 5%, then for two days sku-a at 2% and sku-b at 10% (three other items at
// 3% throughout; 10,000 impressions per item before the switch and 2,000,
// 10,000 events in all, after it). The pipeline with a six-hour half-life
// (ingest and scorer) ranks sku-b first in at least 90% of Thompson
// requests; the same events without decay keep sku-a first.
func TestDecayFollowsASwitchOfTheBestItem(t *testing.T) {
	const halfLife = 6 * time.Hour
	ie := newIngestEnv(t, 2)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	stacktest.StartProcess(t, bin, nil, append(ie.args(ie.group), "-half-life", halfLife.String())...)
	plainPrefix, plainGroup := stacktest.UniqueName("it_plain"), stacktest.UniqueName("it_ingest")
	stacktest.StartProcess(t, bin, nil, append(ie.args(plainGroup), "-key-prefix", plainPrefix)...)

	items := []string{"sku-a", "sku-b", "sku-0", "sku-1", "sku-2"}
	before := map[string]float64{"sku-a": 0.10, "sku-b": 0.05}
	after := map[string]float64{"sku-a": 0.02, "sku-b": 0.10}
	rate := func(rates map[string]float64, item string) float64 {
		if r, ok := rates[item]; ok {
			return r
		}
		return 0.03
	}
	now := time.Now().Add(-time.Minute).UnixMilli()
	day := 24 * time.Hour.Milliseconds()
	rng := rand.New(rand.NewPCG(3, 4))
	var msgs []kafka.Message
	n := 0
	emit := func(item string, typ schemas.EventType, at int64) {
		n++
		ev := &schemas.Interaction{EventId: "s" + strconv.Itoa(n), UserId: "u-" + strconv.Itoa(rng.IntN(300)), ItemId: item,
			Context: "home", Type: typ, EventTimeMs: at}
		msgs = append(msgs, encode(t, ev, n))
	}
	phase := func(rates map[string]float64, impressions int, from, to int64) {
		for _, item := range items {
			for range impressions {
				at := from + rng.Int64N(to-from)
				emit(item, schemas.Impression, at)
				if rng.Float64() < rate(rates, item) {
					emit(item, schemas.Click, at+1)
				}
			}
		}
	}
	phase(before, 10_000, now-12*day, now-2*day)
	phase(after, 2_000, now-2*day, now)
	w := newWriter(ie.brokers, ie.topic)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("producing: %.300v", err)
	}
	w.Close()
	stacktest.WaitForLag(t, ie.brokers, ie.group, ie.topic, 3*time.Minute)
	stacktest.WaitForLag(t, ie.brokers, plainGroup, ie.topic, 3*time.Minute)

	firstB := func(prefix string, hl time.Duration) int {
		se := scoreEnvOn(t, ie, prefix, hl)
		m := consumers.DefaultRewardModel()
		m.Decay = sampler.Decay{HalfLife: hl}
		se.startScorer(t, consumers.ScorerConfig{Model: m})
		const requests = 200
		var reqs []kafka.Message
		for i := range requests {
			reqs = append(reqs, requestMsg(t, &schemas.ScoreRequest{RequestId: "r" + strconv.Itoa(i), UserId: "probe-" + strconv.Itoa(i),
				Context: "home", Candidates: items, K: int32(len(items))}))
		}
		se.send(t, reqs...)
		got := readTopic(t, se.brokers, se.results, 1, time.Minute, atLeast(requests))
		first := 0
		for _, rs := range got {
			if rs[0].GetItems()[0].GetItemId() == "sku-b" {
				first++
			}
		}
		return 100 * first / requests
	}
	withDecay, without := firstB(ie.prefix, halfLife), firstB(plainPrefix, 0)
	t.Logf("sku-b first in %d%% of requests with a %s half-life, %d%% without", withDecay, halfLife, without)
	if withDecay < 90 {
		t.Errorf("with decay, the new best item is first in %d%% of requests, want at least 90%%", withDecay)
	}
	if without >= 10 {
		t.Errorf("without decay, the new best item is first in %d%% of requests: the old counts should keep sku-a first", without)
	}
}
