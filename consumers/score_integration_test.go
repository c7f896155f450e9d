package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

type scoreEnv struct {
	brokers  []string
	redis    string
	cql      string
	requests string
	results  string
	prefix   string
	keyspace string
	group    string
	rdb      redis.UniversalClient
	hot      *hot.Hot
	tier     *store.Tier
	epoch    string
}

func newScoreEnv(t *testing.T, partitions int) *scoreEnv {
	t.Helper()
	e := &scoreEnv{brokers: stacktest.KafkaBrokers(t), redis: stacktest.RedisAddr(t), cql: stacktest.CQLHosts(t)[0]}
	e.requests = stacktest.CreateTopic(t, e.brokers, "it_requests", partitions)
	stacktest.CreateTopicNamed(t, e.brokers, e.requests+schemas.DeadLetterSuffix, 1)
	e.results = stacktest.CreateTopic(t, e.brokers, "it_results", partitions)
	e.prefix = stacktest.UniqueName("it")
	e.keyspace = stacktest.UniqueName("it")
	e.group = stacktest.UniqueName("it_scorer")
	e.rdb = stacktest.NewRedis(t, e.redis)
	var err error
	if e.hot, err = hot.New(e.rdb, hot.Keys{Prefix: e.prefix, Shards: 16}); err != nil {
		t.Fatal(err)
	}
	if e.epoch, err = e.hot.Recover(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	cold, _ := stacktest.OpenCold(t, e.keyspace, e.prefix, true)
	if e.tier, err = store.NewTier(e.hot, cold, store.TierConfig{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// seedArms writes arm counts to the hot tier as ingest would.
func (e *scoreEnv) seedArms(t *testing.T, counts map[state.Arm]state.Counts) {
	t.Helper()
	keys := e.hot.Keys()
	byShard := map[int][]state.ArmDelta{}
	for a, c := range counts {
		s := keys.Shard(a)
		byShard[s] = append(byShard[s], state.ArmDelta{Arm: a, Counts: c})
	}
	var batches []state.ShardBatch
	for s, d := range byShard {
		batches = append(batches, state.ShardBatch{Shard: s, Expected: state.NoWatermark, Deltas: d})
	}
	if _, err := e.hot.Apply(context.Background(), "seed", 0, 0, e.epoch, batches); err != nil {
		t.Fatal(err)
	}
}

// startScorer runs a scorer in this process until the test ends.
func (e *scoreEnv) startScorer(t *testing.T, cfg consumers.ScorerConfig) *consumers.Scorer {
	t.Helper()
	out := &kafka.Writer{Addr: kafka.TCP(e.brokers...), RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
		BatchSize: 10_000, BatchBytes: 64 << 20, BatchTimeout: time.Millisecond}
	cfg.Brokers, cfg.Topic, cfg.ResultsTopic, cfg.GroupID = e.brokers, e.requests, e.results, e.group
	cfg.SessionTimeout, cfg.FetchMaxWait = 6*time.Second, 50*time.Millisecond
	if cfg.SessionWait == 0 {
		cfg.SessionWait = 2 * time.Second
	}
	sc, err := consumers.NewScorer(cfg, e.hot, e.tier, out)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := sc.Run(ctx); err != nil {
			t.Errorf("scorer: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		out.Close()
	})
	return sc
}

func (e *scoreEnv) send(t *testing.T, msgs ...kafka.Message) {
	t.Helper()
	w := newWriter(e.brokers, e.requests)
	w.BatchBytes = 16 << 20
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("sending requests: %.300v", err)
	}
}

func requestMsg(t testing.TB, r *schemas.ScoreRequest) kafka.Message {
	b, err := schemas.Protobuf.AppendScoreRequest(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(r.GetUserId()), Value: b}
}

// readTopic reads every partition of topic from the start until done
// returns true for the responses so far, or fails after timeout.
func readTopic(t *testing.T, brokers []string, topic string, partitions int, timeout time.Duration,
	done func(map[string][]*schemas.ScoreResponse) bool) map[string][]*schemas.ScoreResponse {
	t.Helper()
	return readByRequest(t, brokers, topic, partitions, timeout, done, func(m kafka.Message) (*schemas.ScoreResponse, error) {
		codec, err := schemas.CodecFor(headerOf(m, schemas.HeaderContentType))
		resp := &schemas.ScoreResponse{}
		if err == nil {
			err = codec.DecodeScoreResponse(schemas.DefaultLimits(), m.Value, resp)
		}
		if err == nil && string(m.Key) != resp.GetRequestId() {
			err = fmt.Errorf("response keyed %q carries request id %q", m.Key, resp.GetRequestId())
		}
		return resp, err
	})
}

// readDecisions is readTopic for a decisions topic.
func readDecisions(t *testing.T, brokers []string, topic string, partitions int, timeout time.Duration,
	done func(map[string][]*schemas.Decision) bool) map[string][]*schemas.Decision {
	t.Helper()
	return readByRequest(t, brokers, topic, partitions, timeout, done, func(m kafka.Message) (*schemas.Decision, error) {
		d := &schemas.Decision{}
		err := schemas.Protobuf.DecodeDecision(schemas.DefaultLimits(), m.Value, d)
		if err == nil && string(m.Key) != d.GetUserId() {
			err = fmt.Errorf("decision keyed %q is of user %q", m.Key, d.GetUserId())
		}
		return d, err
	})
}

// readByRequest reads every partition of topic from the start, decoding
// each record, until done returns true for the messages so far by request
// id, or fails after timeout.
func readByRequest[M interface{ GetRequestId() string }](t *testing.T, brokers []string, topic string, partitions int, timeout time.Duration,
	done func(map[string][]M) bool, decode func(kafka.Message) (M, error)) map[string][]M {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	type item struct {
		msg M
		err error
	}
	ch := make(chan item)
	var wg sync.WaitGroup
	for p := 0; p < partitions; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond, MaxBytes: 16 << 20})
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				msg, err := decode(m)
				select {
				case ch <- item{msg, err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	got := map[string][]M{}
	for !done(got) {
		select {
		case it := <-ch:
			if it.err != nil {
				t.Fatalf("reading %s: %v", topic, it.err)
			}
			got[it.msg.GetRequestId()] = append(got[it.msg.GetRequestId()], it.msg)
		case <-ctx.Done():
			t.Fatalf("reading %s: %d request ids after %s", topic, len(got), timeout)
		}
	}
	return got
}

func rankedIDs(items []*schemas.RankedItem) []string {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.GetItemId()
	}
	return ids
}

func headerOf(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func atLeast(n int) func(map[string][]*schemas.ScoreResponse) bool {
	return func(m map[string][]*schemas.ScoreResponse) bool { return len(m) >= n }
}

// catalogue returns counts for items sku-0 … sku-(n-1) in ctx with
// click-through rates spread from 1% to 30%.
func catalogue(ctx string, n int) map[state.Arm]state.Counts {
	out := map[state.Arm]state.Counts{}
	for i := 0; i < n; i++ {
		imp := int64(100 + 37*i)
		clicks := imp * int64(1+(i*29)%30) / 100
		out[state.Arm{Context: ctx, Item: "sku-" + strconv.Itoa(i)}] = state.Counts{ByType: [state.NumEventTypes]int64{imp, clicks, int64(i % 3), 0, int64(i % 2)}}
	}
	return out
}

// expectRank ranks as the scorer must, computing each posterior from the
// contract (trials = impressions, reward = clicks, prior Beta(1, 1), the
// user's own counts added at weight 1) and ranking with the sampler and
// the request's seed.
func expectRank(counts map[state.Arm]state.Counts, own map[state.Arm]state.Counts, r *schemas.ScoreRequest, seed uint64) ([]sampler.Ranked, []sampler.Arm) {
	arms := make([]sampler.Arm, len(r.GetCandidates()))
	for i, c := range r.GetCandidates() {
		a := state.Arm{Context: r.GetContext(), Item: c}
		g := counts[a]
		alpha := 1 + float64(g.ByType[1])
		beta := 1 + max(float64(g.ByType[0])-float64(g.ByType[1]), 0)
		if o, ok := own[a]; ok {
			alpha += float64(o.ByType[1])
			beta += max(float64(o.ByType[0])-float64(o.ByType[1]), 0)
		}
		arm, err := sampler.NewArm(alpha, beta)
		if err != nil {
			panic(err)
		}
		arms[i] = arm
	}
	mode := sampler.Thompson
	if r.GetMode() == schemas.ModeMean {
		mode = sampler.Mean
	}
	var rk sampler.Ranker
	return rk.Rank(arms, int(r.GetK()), mode, seed, nil), arms
}

// With a seed, a response is exactly the sampler's ranking of the stored
// posteriors, with the user's own counts added while the user is hot;
// mean mode ranks by posterior mean; unseen items get the prior; a request
// with a reply topic is answered there and only there.
func TestScoreMatchesSamplerOnStoredPosteriors(t *testing.T) {
	e := newScoreEnv(t, 3)
	counts := catalogue("home", 60)
	e.seedArms(t, counts)

	// A hot user who clicked sku-3 on each of 30 impressions and never sku-7 in 50.
	ctx := context.Background()
	own := map[state.Arm]state.Counts{
		{Context: "home", Item: "sku-3"}: {ByType: [state.NumEventTypes]int64{30, 30, 0, 0, 0}},
		{Context: "home", Item: "sku-7"}: {ByType: [state.NumEventTypes]int64{50, 0, 0, 0, 0}},
	}
	var evs []state.UserEvent
	off := int64(0)
	for a, c := range own {
		for ty, n := range c.ByType {
			for j := int64(0); j < n; j++ {
				off++
				evs = append(evs, state.UserEvent{Offset: off, Event: state.HistoryEvent{
					UserID: "hot", EventID: "e" + strconv.FormatInt(off, 10), ItemID: a.Item, Context: a.Context,
					Type: int32(schemas.Impression) + int32(ty), EventTimeMs: 1_767_225_600_000 + off,
				}})
			}
		}
	}
	if err := e.tier.EnsureLoaded(ctx, []string{"hot"}, e.epoch); err != nil {
		t.Fatal(err)
	}
	if notLoaded, _, err := e.tier.ApplyUserEvents(ctx, "interactions", 0, e.epoch, map[string][]state.UserEvent{"hot": evs}); err != nil || len(notLoaded) > 0 {
		t.Fatalf("applying the user's events: %v %v", err, notLoaded)
	}

	replyTopic := stacktest.CreateTopic(t, e.brokers, consumers.ReplyTopicPrefix+"it_reply", 1)
	sc := e.startScorer(t, consumers.ScorerConfig{})
	candidates := make([]string, 0, 70)
	for i := 0; i < 70; i++ { // sku-60 … sku-69 were never seen
		candidates = append(candidates, "sku-"+strconv.Itoa(i))
	}
	var reqs []*schemas.ScoreRequest
	var msgs []kafka.Message
	for i := 0; i < 40; i++ {
		seed := uint64(1000 + i)
		r := &schemas.ScoreRequest{RequestId: "r" + strconv.Itoa(i), UserId: "u-" + strconv.Itoa(i%7), Context: "home",
			Candidates: candidates, K: 10, Seed: &seed}
		switch i % 4 {
		case 1:
			r.Mode = schemas.ModeMean
		case 2:
			r.UserId = "hot"
		case 3:
			r.K = 70
		}
		if i == 5 {
			r.ReplyTopic = replyTopic
		}
		r.Explain = i%5 == 0
		reqs = append(reqs, r)
		msgs = append(msgs, requestMsg(t, r))
	}
	// Half, then the other half once the first is answered: the second
	// half finds the arms the first cached (all at once, each partition may
	// take its requests in one batch, all of them misses).
	e.send(t, msgs[:20]...)
	readTopic(t, e.brokers, e.results, 3, time.Minute, atLeast(19)) // r5 goes to its reply topic
	e.send(t, msgs[20:]...)
	got := readTopic(t, e.brokers, e.results, 3, time.Minute, atLeast(len(reqs)-1))
	replies := readTopic(t, e.brokers, replyTopic, 1, time.Minute, atLeast(1))
	if len(replies) != 1 || replies["r5"] == nil {
		t.Fatalf("reply topic holds %v, want r5 only", replies)
	}
	if got["r5"] != nil {
		t.Fatal("r5 answered on the results topic as well as its reply topic")
	}
	got["r5"] = replies["r5"]

	for i, r := range reqs {
		resp := got[r.GetRequestId()][0]
		var userCounts map[state.Arm]state.Counts
		if r.GetUserId() == "hot" {
			userCounts = own
		}
		want, arms := expectRank(counts, userCounts, r, r.GetSeed())
		if len(resp.GetItems()) != len(want) {
			t.Fatalf("%s: %d items, want %d", r.GetRequestId(), len(resp.GetItems()), len(want))
		}
		for j, w := range want {
			it := resp.GetItems()[j]
			if it.GetItemId() != candidates[w.Index] || it.GetScore() != w.Score || it.GetMean() != arms[w.Index].Mean() {
				t.Fatalf("%s (mode %v, user %s) item %d: %s score %v mean %v; want %s score %v mean %v", r.GetRequestId(), r.GetMode(), r.GetUserId(), j,
					it.GetItemId(), it.GetScore(), it.GetMean(), candidates[w.Index], w.Score, arms[w.Index].Mean())
			}
			if r.GetMode() == schemas.ModeMean && j > 0 && it.GetMean() > resp.GetItems()[j-1].GetMean() {
				t.Fatalf("%s: mean mode out of order at %d", r.GetRequestId(), j)
			}
			checkExplanation(t, r, it, arms[w.Index], counts, userCounts, i >= 20)
		}
		if resp.GetSeed() != r.GetSeed() || resp.GetModelVersion() == "" || resp.GetTiming().GetScoredTimeMs() == 0 {
			t.Fatalf("%s: seed %d model %q timing %v", r.GetRequestId(), resp.GetSeed(), resp.GetModelVersion(), resp.GetTiming())
		}
		if r.GetK() == 70 {
			for _, it := range resp.GetItems() {
				if _, seen := counts[state.Arm{Context: "home", Item: it.GetItemId()}]; !seen && it.GetMean() != 0.5 {
					t.Fatalf("unseen %s has mean %v, want the prior's 0.5", it.GetItemId(), it.GetMean())
				}
			}
		}
	}
	if st := sc.Stats(); st.Scored != int64(len(reqs)) || st.CacheHits == 0 {
		t.Fatalf("stats %+v: want %d scored and cache hits", st, len(reqs))
	}
	// The personalised case tests something only if the user's counts
	// change the ranking.
	hot := reqs[2]
	with, _ := expectRank(counts, own, hot, hot.GetSeed())
	without, _ := expectRank(counts, nil, hot, hot.GetSeed())
	if fmt.Sprint(with) == fmt.Sprint(without) {
		t.Fatal("the hot user's own counts do not change the ranking")
	}
}

// checkExplanation checks a ranked item's explanation: none unless the
// request asked; otherwise the posterior ranked, the user's part, and its
// source: the prior for an arm never seen, the cache for one a previous
// batch read (cached), the cache or the hot tier otherwise.
func checkExplanation(t *testing.T, r *schemas.ScoreRequest, it *schemas.RankedItem, arm sampler.Arm,
	counts, own map[state.Arm]state.Counts, cached bool) {
	t.Helper()
	e := it.GetExplanation()
	if !r.GetExplain() {
		if e != nil {
			t.Fatalf("%s: %s explained without being asked", r.GetRequestId(), it.GetItemId())
		}
		return
	}
	a := state.Arm{Context: r.GetContext(), Item: it.GetItemId()}
	var ua, ub float64
	if o, ok := own[a]; ok {
		ua, ub = float64(o.ByType[1]), max(float64(o.ByType[0]-o.ByType[1]), 0)
	}
	_, seen := counts[a]
	source := e.GetSource()
	switch {
	case !seen && source != schemas.SourcePrior,
		seen && cached && source != schemas.SourceCache,
		seen && source != schemas.SourceCache && source != schemas.SourceHot:
		t.Fatalf("%s: %s (seen %v, cached %v) explained as from %v", r.GetRequestId(), it.GetItemId(), seen, cached, source)
	}
	if e.GetAlpha() != arm.Alpha() || e.GetBeta() != arm.Beta() || e.GetUserAlpha() != ua || e.GetUserBeta() != ub {
		t.Fatalf("%s: %s explained as %v; want Beta(%v, %v) with the user's %v, %v", r.GetRequestId(), it.GetItemId(), e, arm.Alpha(), arm.Beta(), ua, ub)
	}
}

// An arm with many clicks and few impressions ranks first in at least 99%
// of Thompson requests without a seed; the others were shown often and
// rarely clicked.
func TestScoreStrongArmRanksFirst(t *testing.T) {
	e := newScoreEnv(t, 2)
	counts := map[state.Arm]state.Counts{}
	var candidates []string
	for i := 0; i < 50; i++ {
		id := "sku-" + strconv.Itoa(i)
		candidates = append(candidates, id)
		counts[state.Arm{Context: "search", Item: id}] = state.Counts{ByType: [state.NumEventTypes]int64{2000, 40, 0, 0, 0}}
	}
	counts[state.Arm{Context: "search", Item: "sku-17"}] = state.Counts{ByType: [state.NumEventTypes]int64{60, 45, 0, 0, 0}}
	e.seedArms(t, counts)
	e.startScorer(t, consumers.ScorerConfig{})
	const n = 400
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, requestMsg(t, &schemas.ScoreRequest{RequestId: "s" + strconv.Itoa(i), UserId: "u" + strconv.Itoa(i%20),
			Context: "search", Candidates: candidates, K: 5}))
	}
	e.send(t, msgs...)
	got := readTopic(t, e.brokers, e.results, 2, time.Minute, atLeast(n))
	first := 0
	seeds := map[uint64]bool{}
	for _, rs := range got {
		if rs[0].GetItems()[0].GetItemId() == "sku-17" {
			first++
		}
		seeds[rs[0].GetSeed()] = true
	}
	if first < n*99/100 {
		t.Fatalf("sku-17 first in %d of %d requests, want at least 99%%", first, n)
	}
	if len(seeds) < n*9/10 {
		t.Fatalf("%d distinct seeds in %d requests without one: Thompson sampling is not exploring", len(seeds), n)
	}
}

// Malformed requests go to the dead-letter topic with their reason and
// origin; the valid requests around them are answered; a request past its
// deadline is skipped and counted; the group's lag ends at 0.
func TestScoreDeadLetters(t *testing.T) {
	e := newScoreEnv(t, 2)
	e.seedArms(t, catalogue("", 20))
	forbidden := stacktest.CreateTopic(t, e.brokers, "it_forbidden", 1)
	sc := e.startScorer(t, consumers.ScorerConfig{ReplyTopicWait: time.Second})
	many := make([]string, schemas.DefaultLimits().MaxCandidates+1)
	for i := range many {
		many[i] = "sku-" + strconv.Itoa(i)
	}
	valid := func(id string) *schemas.ScoreRequest {
		return &schemas.ScoreRequest{RequestId: id, UserId: "u-" + id, Candidates: []string{"sku-1", "sku-2", "sku-3"}, K: 2}
	}
	bad := []struct {
		reason string
		msg    kafka.Message
	}{
		{"malformed protobuf", kafka.Message{Key: []byte("u"), Value: []byte{0x0a, 0xff, 0x01}}},
		{"invalid candidates", requestMsg(t, &schemas.ScoreRequest{RequestId: "b1", UserId: "u", K: 3})},
		{"invalid candidates", requestMsg(t, &schemas.ScoreRequest{RequestId: "b2", UserId: "u", Candidates: many, K: 3})},
		{"invalid k", requestMsg(t, &schemas.ScoreRequest{RequestId: "b3", UserId: "u", Candidates: []string{"a"}, K: 0})},
		{"invalid k", requestMsg(t, &schemas.ScoreRequest{RequestId: "b4", UserId: "u", Candidates: []string{"a"}, K: -4})},
		{"invalid deadline_ms", requestMsg(t, &schemas.ScoreRequest{RequestId: "b5", UserId: "u", Candidates: []string{"a"}, K: 1, DeadlineMs: -1})},
		{"invalid reply_topic", requestMsg(t, &schemas.ScoreRequest{RequestId: "b6", UserId: "u", Candidates: []string{"a"}, K: 1, ReplyTopic: "no such/topic"})},
		{"reply topic", requestMsg(t, &schemas.ScoreRequest{RequestId: "b7", UserId: "u", Candidates: []string{"a"}, K: 1, ReplyTopic: stacktest.UniqueName(consumers.ReplyTopicPrefix + "missing")})},
		// Topics outside the allowlist: nothing may be written there.
		{"invalid reply_topic", requestMsg(t, &schemas.ScoreRequest{RequestId: "b8", UserId: "u", Candidates: []string{"a"}, K: 1, ReplyTopic: forbidden})},
		{"invalid reply_topic", requestMsg(t, &schemas.ScoreRequest{RequestId: "b9", UserId: "u", Candidates: []string{"a"}, K: 1, ReplyTopic: e.requests})},
		{"invalid reply_topic", requestMsg(t, &schemas.ScoreRequest{RequestId: "b10", UserId: "u", Candidates: []string{"a"}, K: 1, ReplyTopic: "__consumer_offsets"})},
		{"invalid content-type header", kafka.Message{Key: []byte("u"), Value: []byte("{}"), Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte("text/csv")}}}},
		{"malformed JSON", kafka.Message{Key: []byte("u"), Value: []byte(`{"request_id": 7}`), Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(schemas.ContentTypeJSON)}}}},
	}
	var msgs []kafka.Message
	nValid := 0
	for i := 0; i < 300; i++ {
		if i%10 == 5 {
			b := bad[(i/10)%len(bad)]
			m := b.msg
			m.Headers = append(append([]kafka.Header{}, m.Headers...), kafka.Header{Key: "test-reason", Value: []byte(b.reason)})
			msgs = append(msgs, m)
			continue
		}
		r := valid("v" + strconv.Itoa(i))
		if i == 7 {
			r.DeadlineMs = time.Now().Add(-time.Minute).UnixMilli()
		} else {
			nValid++
		}
		if i%3 == 0 {
			r.DeadlineMs = time.Now().Add(time.Hour).UnixMilli()
		}
		msgs = append(msgs, requestMsg(t, r))
	}
	e.send(t, msgs...)
	got := readTopic(t, e.brokers, e.results, 2, time.Minute, atLeast(nValid))
	if got["v7"] != nil {
		t.Fatal("a request past its deadline was answered")
	}
	stacktest.WaitForLag(t, e.brokers, e.group, e.requests, time.Minute)
	if st := sc.Stats(); st.PastDeadline != 1 || st.DeadLetters != 30 {
		t.Fatalf("stats %+v: want 1 past deadline and 30 dead letters", st)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.requests + schemas.DeadLetterSuffix, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 30; i++ {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading dead letter %d of 30: %v", i, err)
		}
		reason, got := headerOf(m, "test-reason"), headerOf(m, consumers.HeaderError)
		if !contains(got, reason) || headerOf(m, consumers.HeaderOriginTopic) != e.requests || headerOf(m, consumers.HeaderOriginOffset) == "" {
			t.Fatalf("dead letter with error %q (want %q), origin %q/%q", got, reason, headerOf(m, consumers.HeaderOriginTopic), headerOf(m, consumers.HeaderOriginOffset))
		}
	}
	// Nothing was written to the topics outside the allowlist: the
	// forbidden topic is empty, the request topic holds the requests sent.
	if n := endOffset(ctx, t, e.brokers, forbidden, 0); n != 0 {
		t.Errorf("%s holds %d records, want none", forbidden, n)
	}
	if n := endOffset(ctx, t, e.brokers, e.requests, 0) + endOffset(ctx, t, e.brokers, e.requests, 1); n != int64(len(msgs)) {
		t.Errorf("%s holds %d records, want the %d requests sent", e.requests, n, len(msgs))
	}
}

// endOffset is the offset after the last record of a partition.
func endOffset(ctx context.Context, t *testing.T, brokers []string, topic string, partition int) int64 {
	t.Helper()
	conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	end, err := conn.ReadLastOffset()
	if err != nil {
		t.Fatal(err)
	}
	return end
}

// 10,000 candidates rank in full; k larger than the candidate count
// returns every candidate once.
func TestScoreLargeRequests(t *testing.T) {
	e := newScoreEnv(t, 1)
	e.seedArms(t, catalogue("big", 5000))
	e.startScorer(t, consumers.ScorerConfig{})
	big := make([]string, 10_000)
	for i := range big {
		big[i] = "sku-" + strconv.Itoa(i)
	}
	seed := uint64(7)
	reqs := []*schemas.ScoreRequest{
		{RequestId: "all", UserId: "u1", Context: "big", Candidates: big, K: 10_000, Seed: &seed},
		{RequestId: "top", UserId: "u2", Context: "big", Candidates: big, K: 25},
		{RequestId: "over", UserId: "u3", Context: "big", Candidates: big[:12], K: 500},
	}
	var msgs []kafka.Message
	for _, r := range reqs {
		msgs = append(msgs, requestMsg(t, r))
	}
	e.send(t, msgs...)
	got := readTopic(t, e.brokers, e.results, 1, time.Minute, atLeast(len(reqs)))
	for _, r := range reqs {
		items := got[r.GetRequestId()][0].GetItems()
		want := min(int(r.GetK()), len(r.GetCandidates()))
		if len(items) != want {
			t.Fatalf("%s: %d items, want %d", r.GetRequestId(), len(items), want)
		}
		seen := map[string]bool{}
		for j, it := range items {
			if seen[it.GetItemId()] {
				t.Fatalf("%s: %s ranked twice", r.GetRequestId(), it.GetItemId())
			}
			seen[it.GetItemId()] = true
			if j > 0 && it.GetScore() > items[j-1].GetScore() {
				t.Fatalf("%s: scores out of order at %d", r.GetRequestId(), j)
			}
		}
	}
	all := got["all"][0].GetItems()
	want, _ := expectRank(catalogue("big", 5000), nil, reqs[0], seed)
	for j := range want {
		if all[j].GetItemId() != big[want[j].Index] || all[j].GetScore() != want[j].Score {
			t.Fatalf("all: item %d is %s, want %s", j, all[j].GetItemId(), big[want[j].Index])
		}
	}
}

// SIGKILLs of scorer processes mid-stream: every request sent gets a
// response; a request answered twice (its batch published, the commit
// lost) gets the same ranking, since the seed and the stats are the same.
// The decision log holds a decision for every request answered, the same
// ranking as its response, with propensities: one per request in effect.
func TestScoreAnswersEveryRequestUnderKills(t *testing.T) {
	e := newScoreEnv(t, 4)
	decisions := stacktest.CreateTopic(t, e.brokers, "it_decisions", 4)
	counts := catalogue("home", 400)
	e.seedArms(t, counts)
	var candidates []string
	for i := 0; i < 400; i++ {
		candidates = append(candidates, "sku-"+strconv.Itoa(i))
	}
	bin := stacktest.BuildBinary(t, "./cmd/bandit-score")
	args := []string{
		"-kafka-brokers", e.brokers[0], "-redis-addr", e.redis, "-cql-hosts", e.cql, "-cql-keyspace", e.keyspace, "-cql-migrate",
		"-topic", e.requests, "-results-topic", e.results, "-group", e.group, "-key-prefix", e.prefix, "-shards", "16",
		"-session-timeout", "6s", "-fetch-max-wait", "50ms", "-fetch-max-bytes", "65536",
		"-fault-commit-delay", "100ms", "-log-level", "warn", "-decisions-topic", decisions, "-propensity-draws", "20",
	}
	procs := []*stacktest.Process{stacktest.StartProcess(t, bin, nil, args...), stacktest.StartProcess(t, bin, nil, args...)}

	const total = 4000
	sendCtx, stopSending := context.WithCancel(context.Background())
	defer stopSending()
	sendErr := make(chan error, 1)
	go func() {
		w := newWriter(e.brokers, e.requests)
		defer w.Close()
		for i := 0; i < total; i += 100 {
			var msgs []kafka.Message
			for j := i; j < i+100; j++ {
				seed := uint64(j)
				msgs = append(msgs, requestMsg(t, &schemas.ScoreRequest{RequestId: "k" + strconv.Itoa(j), UserId: "u" + strconv.Itoa(j%50),
					Context: "home", Candidates: candidates, K: 20, Seed: &seed}))
			}
			if err := w.WriteMessages(sendCtx, msgs...); err != nil {
				sendErr <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
		sendErr <- nil
	}()
	kills := 0
	for kills < 8 {
		time.Sleep(700 * time.Millisecond)
		p := procs[kills%2]
		p.Kill()
		kills++
		time.Sleep(300 * time.Millisecond)
		p.Start()
	}
	if err := <-sendErr; err != nil {
		t.Fatalf("sending: %v", err)
	}
	got := readTopic(t, e.brokers, e.results, 4, 3*time.Minute, atLeast(total))
	dups := 0
	for id, rs := range got {
		for _, r := range rs[1:] {
			dups++
			if fmt.Sprint(r.GetItems()) != fmt.Sprint(rs[0].GetItems()) {
				t.Fatalf("%s answered twice with different rankings", id)
			}
		}
	}
	for j := 0; j < total; j++ {
		if got["k"+strconv.Itoa(j)] == nil {
			t.Fatalf("request k%d never answered", j)
		}
	}
	logged := readDecisions(t, e.brokers, decisions, 4, 3*time.Minute, func(m map[string][]*schemas.Decision) bool { return len(m) >= total })
	twice := 0
	for id, ds := range logged {
		resp := got[id]
		if resp == nil {
			t.Fatalf("decision of %s, a request never answered", id)
		}
		for _, d := range ds {
			if fmt.Sprint(rankedIDs(d.GetItems())) != fmt.Sprint(rankedIDs(resp[0].GetItems())) || len(d.GetAlpha()) != 400 ||
				!(d.GetItems()[0].GetPropensity() > 0) {
				t.Fatalf("%s: decision %v, response %v", id, rankedIDs(d.GetItems()), rankedIDs(resp[0].GetItems()))
			}
		}
		twice += len(ds) - 1
	}
	if len(logged) != total {
		t.Fatalf("%d requests decided, want %d", len(logged), total)
	}
	t.Logf("%d requests, %d kills, %d duplicate responses, %d decisions logged twice", total, kills, dups, twice)
	if dups == 0 {
		t.Log("no batch was answered twice: no kill landed between a publish and its commit")
	}
	for _, p := range procs {
		p.Kill()
	}
}

// On a results topic with Kafka's default limit (max.message.bytes 1 MiB),
// a valid request whose response is 1.2 MB goes to the dead-letter topic
// with the reason, and the requests after it on its partition are answered.
func TestScoreResponseTooLargeForTheTopic(t *testing.T) {
	e := newScoreEnv(t, 1)
	client := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 30 * time.Second}
	resp, err := client.AlterConfigs(context.Background(), &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: e.results,
		Configs: []kafka.AlterConfigRequestConfig{{Name: "max.message.bytes", Value: "1048576"}},
	}}})
	if err == nil {
		for _, e := range resp.Errors {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		t.Fatalf("setting max.message.bytes: %v", err)
	}
	e.seedArms(t, catalogue("", 20))
	e.startScorer(t, consumers.ScorerConfig{})
	long := make([]string, schemas.DefaultLimits().MaxCandidates)
	for i := range long {
		long[i] = fmt.Sprintf("item-%05d-%s", i, strings.Repeat("x", 89))
	}
	msgs := []kafka.Message{requestMsg(t, &schemas.ScoreRequest{RequestId: "huge", UserId: "u", Candidates: long, K: int32(len(long))})}
	for i := range 20 {
		msgs = append(msgs, requestMsg(t, &schemas.ScoreRequest{RequestId: "v" + strconv.Itoa(i), UserId: "u", Candidates: []string{"sku-1", "sku-2"}, K: 1}))
	}
	e.send(t, msgs...)
	got := readTopic(t, e.brokers, e.results, 1, time.Minute, atLeast(20))
	if got["huge"] != nil {
		t.Fatal("the oversize response was written")
	}
	stacktest.WaitForLag(t, e.brokers, e.group, e.requests, time.Minute)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.requests + schemas.DeadLetterSuffix, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if reason := headerOf(m, consumers.HeaderError); !contains(reason, "larger than topic") || headerOf(m, consumers.HeaderOriginOffset) != "0" {
		t.Fatalf("dead letter %q from offset %s", reason, headerOf(m, consumers.HeaderOriginOffset))
	}
}

// A request naming a reply topic that does not exist yet holds back only
// itself: the requests after it on the same partition are answered at
// once, the group's commit stays at it, and when the client creates the
// topic its response arrives there and the commit moves to the end.
func TestMissingReplyTopicDelaysOnlyItsRequest(t *testing.T) {
	e := newScoreEnv(t, 1)
	e.seedArms(t, catalogue("", 5))
	e.startScorer(t, consumers.ScorerConfig{ReplyTopicWait: 2 * time.Minute})
	reply := stacktest.UniqueName(consumers.ReplyTopicPrefix + "late")
	msgs := []kafka.Message{requestMsg(t, &schemas.ScoreRequest{RequestId: "waits", UserId: "u-w", Candidates: []string{"sku-1", "sku-2"}, K: 1, ReplyTopic: reply})}
	for i := 0; i < 50; i++ {
		msgs = append(msgs, requestMsg(t, &schemas.ScoreRequest{RequestId: "r" + strconv.Itoa(i), UserId: "u-" + strconv.Itoa(i), Candidates: []string{"sku-1", "sku-2"}, K: 1}))
	}
	e.send(t, msgs...)
	start := time.Now()
	got := readTopic(t, e.brokers, e.results, 1, time.Minute, atLeast(50))
	if len(got) != 50 || got["waits"] != nil {
		t.Fatalf("%d responses in the results topic, the waiting one among them: %v", len(got), got["waits"] != nil)
	}
	// The commit stays at the waiting request (offset 0) meanwhile.
	time.Sleep(time.Second)
	if lag, err := stacktest.Lag(context.Background(), e.brokers, e.group, e.requests); err != nil || lag != int64(len(msgs)) {
		t.Fatalf("lag %d (%v) while a response waits; want %d: the commit passed it", lag, err, len(msgs))
	}
	stacktest.CreateTopicNamed(t, e.brokers, reply, 1)
	late := readTopic(t, e.brokers, reply, 1, time.Minute, atLeast(1))
	if late["waits"] == nil {
		t.Fatal("the waiting response never reached its reply topic")
	}
	stacktest.WaitForLag(t, e.brokers, e.group, e.requests, time.Minute)
	t.Logf("the other requests answered within %s of sending", time.Since(start).Round(time.Millisecond))
}
