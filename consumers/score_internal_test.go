package consumers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// Unit tests of the scorer's batch handling, with in-memory stores.

// fakeReader serves arm counts and counts its reads.
type fakeReader struct {
	mu     sync.Mutex
	counts map[state.Arm]state.Counts
	reads  int
	err    error
}

func (r *fakeReader) Counts(_ context.Context, arms []state.Arm) ([]state.Counts, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.reads += len(arms)
	out := make([]state.Counts, len(arms))
	for i, a := range arms {
		out[i] = r.counts[a]
	}
	return out, nil
}

// fakeSessions has some users hot with their own counts; EnsureLoaded
// makes the others hot.
type fakeSessions struct {
	mu     sync.Mutex
	hot    map[string]map[state.Arm]state.Counts
	loads  int
	epoch  string
	loadIn time.Duration
}

func (f *fakeSessions) Epoch(context.Context) (string, error) { return f.epoch, nil }

func (f *fakeSessions) EnsureLoaded(ctx context.Context, users []string, _ string) error {
	select {
	case <-time.After(f.loadIn):
	case <-ctx.Done():
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range users {
		if f.hot[u] == nil {
			f.hot[u] = map[state.Arm]state.Counts{}
		}
		f.loads++
	}
	return nil
}

func (f *fakeSessions) Sessions(_ context.Context, users []string) ([]state.SessionStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]state.SessionStats, len(users))
	for i, u := range users {
		if arms, ok := f.hot[u]; ok {
			out[i] = state.SessionStats{Loaded: true, Arms: arms}
		}
	}
	return out, nil
}

func newTestScorer(t *testing.T, cfg ScorerConfig, arms ArmReader, sessions SessionStore, out MessageWriter) *Scorer {
	t.Helper()
	cfg.Brokers = []string{"unused:9092"}
	if cfg.Topic == "" {
		cfg.Topic = "req"
	}
	cfg.ResultsTopic = "res"
	var s *Scorer
	var err error
	if sessions == nil {
		s, err = NewScorer(cfg, arms, nil, out)
	} else {
		s, err = NewScorer(cfg, arms, sessions, out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func requestRecord(t *testing.T, offset int64, req *schemas.ScoreRequest, codec schemas.Codec) record {
	t.Helper()
	v, err := codec.AppendScoreRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	return record{offset: offset, key: []byte(req.GetRequestId()), value: v,
		headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(codec.ContentType())}}}
}

func seed(n uint64) *uint64 { return &n }

func decodeResponse(t *testing.T, m kafka.Message) *schemas.ScoreResponse {
	t.Helper()
	codec, err := schemas.CodecFor(headerValue(m.Headers, schemas.HeaderContentType))
	if err != nil {
		t.Fatal(err)
	}
	var resp schemas.ScoreResponse
	if err := codec.DecodeScoreResponse(schemas.DefaultLimits(), m.Value, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

func TestScorerAnswersABatch(t *testing.T) {
	good, bad := state.Arm{Context: "home", Item: "good"}, state.Arm{Context: "home", Item: "bad"}
	reader := &fakeReader{counts: map[state.Arm]state.Counts{
		good: {ByType: [state.NumEventTypes]int64{1000, 900}},
		bad:  {ByType: [state.NumEventTypes]int64{1000, 10}},
	}}
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{CacheMaxAge: time.Hour}, reader, nil, out)
	w := newScoreWorker(s, 0)
	past := time.Now().Add(-time.Minute).UnixMilli()
	batch := []record{
		requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "r1", UserId: "u", Context: "home", Candidates: []string{"bad", "good", "new"}, K: 2, Mode: schemas.ModeMean}, schemas.Protobuf),
		requestRecord(t, 1, &schemas.ScoreRequest{RequestId: "r2", UserId: "u", Context: "home", Candidates: []string{"bad", "good"}, K: 1, Seed: seed(7), ReplyTopic: "score-replies.mine"}, schemas.JSON),
		{offset: 2, value: []byte("\xff garbage")},
		requestRecord(t, 3, &schemas.ScoreRequest{RequestId: "late", UserId: "u", Context: "home", Candidates: []string{"good"}, K: 1, DeadlineMs: past}, schemas.Protobuf),
	}
	if err := w.process(context.Background(), context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	msgs := out.written()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 2 responses and a dead letter", len(msgs))
	}
	byTopic := map[string]kafka.Message{}
	for _, m := range msgs {
		byTopic[m.Topic] = m
	}
	r1 := decodeResponse(t, byTopic["res"])
	if r1.GetRequestId() != "r1" || len(r1.GetItems()) != 2 || r1.GetItems()[0].GetItemId() != "good" || r1.GetItems()[1].GetItemId() != "new" {
		t.Fatalf("r1: %v", r1)
	}
	r2 := decodeResponse(t, byTopic["score-replies.mine"])
	if r2.GetRequestId() != "r2" || r2.GetSeed() != 7 || len(r2.GetItems()) != 1 {
		t.Fatalf("r2: %v", r2)
	}
	if dl := byTopic["req.dlq"]; headerValue(dl.Headers, HeaderOriginOffset) != "2" {
		t.Fatalf("dead letter %v", dl.Headers)
	}
	st := s.Stats()
	if st.Scored != 2 || st.DeadLetters != 1 || st.PastDeadline != 1 || st.PriorArms != 1 || st.HotArms != 4 {
		t.Fatalf("stats %+v", st)
	}

	// The same arms again come from the cache.
	reads := reader.reads
	if err := w.process(context.Background(), context.Background(), batch[:1]); err != nil {
		t.Fatal(err)
	}
	if reader.reads != reads || s.Stats().CacheHits == 0 {
		t.Fatalf("second batch read %d arms from the hot tier, want 0 (cached)", reader.reads-reads)
	}
}

// The same seed gives the same ranking; a hot user's own counts move it.
func TestScorerPersonalizesHotUsers(t *testing.T) {
	a, b := state.Arm{Context: "c", Item: "a"}, state.Arm{Context: "c", Item: "b"}
	reader := &fakeReader{counts: map[state.Arm]state.Counts{
		a: {ByType: [state.NumEventTypes]int64{100, 60}},
		b: {ByType: [state.NumEventTypes]int64{100, 50}},
	}}
	sessions := &fakeSessions{epoch: "e", hot: map[string]map[state.Arm]state.Counts{
		"fan-of-b": {b: {ByType: [state.NumEventTypes]int64{200, 200}}},
	}}
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{SessionWait: time.Second}, reader, sessions, out)
	w := newScoreWorker(s, 0)
	req := func(id, user string) record {
		return requestRecord(t, 0, &schemas.ScoreRequest{RequestId: id, UserId: user, Context: "c", Candidates: []string{"a", "b"}, K: 2, Mode: schemas.ModeMean}, schemas.Protobuf)
	}
	if err := w.process(context.Background(), context.Background(), []record{req("r1", "fan-of-b"), req("r2", "stranger")}); err != nil {
		t.Fatal(err)
	}
	first := map[string]string{}
	for _, m := range out.written() {
		r := decodeResponse(t, m)
		first[r.GetRequestId()] = r.GetItems()[0].GetItemId()
	}
	if first["r1"] != "b" || first["r2"] != "a" {
		t.Fatalf("first items %v: the fan of b should get b, a stranger a", first)
	}
	if sessions.loads != 1 || s.Stats().SessionLoads != 1 {
		t.Fatalf("%d session loads, want the stranger's", sessions.loads)
	}
	s.loading.Wait()
}

// A response to a reply topic the brokers do not know is parked: the other
// responses are written at once, and the partition commits no further
// than its request. It is written when the topic appears; after
// ReplyTopicWait its request goes to the dead-letter topic instead. A
// write failing for some messages retries those only.
func TestScorerPublishFailures(t *testing.T) {
	reader := &fakeReader{}
	out := &fakeWriter{}
	unknown := true
	out.fail = func(call int, msgs []kafka.Message) error {
		for _, m := range msgs {
			if strings.HasPrefix(m.Topic, "score-replies.") && unknown {
				return kafka.UnknownTopicOrPartition
			}
		}
		if call == 0 {
			return kafka.UnknownTopicOrPartition
		}
		return nil
	}
	ctx := context.Background()
	topics := func() map[string]int {
		got := map[string]int{}
		for _, m := range out.written() {
			got[m.Topic]++
		}
		return got
	}
	s := newTestScorer(t, ScorerConfig{ReplyTopicWait: time.Hour}, reader, nil, out)
	w := newScoreWorker(s, 0)
	batch := []record{
		requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "ok", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1}, schemas.Protobuf),
		requestRecord(t, 1, &schemas.ScoreRequest{RequestId: "later", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1, ReplyTopic: "score-replies.soon"}, schemas.Protobuf),
		requestRecord(t, 2, &schemas.ScoreRequest{RequestId: "ok2", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1}, schemas.Protobuf),
	}
	if err := w.process(ctx, ctx, batch); err != nil {
		t.Fatal(err)
	}
	if got := topics(); got["res"] != 2 || got["score-replies.soon"] != 0 {
		t.Fatalf("written by topic %v: want both other responses at once", got)
	}
	if low, ok := w.held(); !ok || low != 1 {
		t.Fatalf("held %d, %v: want the parked request's offset 1", low, ok)
	}
	unknown = false // the client's topic is seen now
	time.Sleep(parkedRetry)
	w.idle(ctx)
	if _, ok := w.held(); ok || topics()["score-replies.soon"] != 1 {
		t.Fatalf("after the topic appeared: held %v, written %v", ok, topics())
	}
	if st := s.Stats(); st.Scored != 3 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v", st)
	}

	// A topic that never appears: dead-lettered after ReplyTopicWait.
	unknown = true
	s = newTestScorer(t, ScorerConfig{ReplyTopicWait: time.Millisecond}, reader, nil, out)
	w = newScoreWorker(s, 0)
	lost := []record{batch[0], requestRecord(t, 1, &schemas.ScoreRequest{RequestId: "lost", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1, ReplyTopic: "score-replies.nowhere"}, schemas.Protobuf)}
	if err := w.process(ctx, ctx, lost); err != nil {
		t.Fatal(err)
	}
	time.Sleep(parkedRetry)
	w.idle(ctx)
	if got := topics(); got["req.dlq"] != 1 || got["score-replies.nowhere"] != 0 {
		t.Fatalf("written by topic %v", got)
	}
	if _, ok := w.held(); ok {
		t.Fatal("a dead-lettered request still holds the partition")
	}
	if st := s.Stats(); st.Scored != 1 || st.DeadLetters != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Partial failures: only the failed message is written again.
	out2 := &fakeWriter{fail: func(call int, msgs []kafka.Message) error {
		if call == 0 && len(msgs) == 2 {
			errs := make(kafka.WriteErrors, len(msgs))
			errs[1] = errTransient
			return errs
		}
		return nil
	}}
	s2 := newTestScorer(t, ScorerConfig{}, reader, nil, out2)
	two := []record{batch[0], requestRecord(t, 1, &schemas.ScoreRequest{RequestId: "b", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1}, schemas.Protobuf)}
	if err := newScoreWorker(s2, 0).process(context.Background(), context.Background(), two); err != nil {
		t.Fatal(err)
	}
	if got := out2.written(); len(got) != 2 || string(got[0].Key) != "ok" || string(got[1].Key) != "b" {
		t.Fatalf("after a partial failure wrote %d messages, want ok's once and b's again", len(got))
	}
}

// A response its topic refuses for good (not authorised, an invalid
// record) sends its request to the dead-letter topic with the reason,
// whether the refusal names the topic or the message; the rest of the
// batch is answered, and transient failures are retried.
func TestScorerPermanentRefusals(t *testing.T) {
	ctx := context.Background()
	out := &fakeWriter{fail: func(call int, msgs []kafka.Message) error {
		for _, m := range msgs {
			if m.Topic == "score-replies.denied" {
				return kafka.TopicAuthorizationFailed
			}
		}
		errs := make(kafka.WriteErrors, len(msgs))
		failed := false
		for i, m := range msgs {
			if m.Topic != "res" {
				continue
			}
			switch string(m.Key) {
			case "invalid":
				errs[i], failed = kafka.InvalidRecord, true
			case "flaky":
				if call < 3 {
					errs[i], failed = kafka.LeaderNotAvailable, true
				}
			}
		}
		if failed {
			return errs
		}
		return nil
	}}
	s := newTestScorer(t, ScorerConfig{}, &fakeReader{}, nil, out)
	req := func(off int64, id, reply string) record {
		return requestRecord(t, off, &schemas.ScoreRequest{RequestId: id, UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1, ReplyTopic: reply}, schemas.Protobuf)
	}
	batch := []record{req(0, "ok", ""), req(1, "denied", "score-replies.denied"), req(2, "invalid", ""), req(3, "flaky", "")}
	if err := newScoreWorker(s, 0).process(ctx, ctx, batch); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	topics := map[string]int{}
	for _, m := range out.written() {
		topics[m.Topic]++
		if m.Topic == "req.dlq" {
			reasons[string(m.Key)] = headerValue(m.Headers, HeaderError)
		}
	}
	if topics["res"] != 2 || topics["req.dlq"] != 2 || topics["score-replies.denied"] != 0 {
		t.Fatalf("written by topic %v", topics)
	}
	if !strings.Contains(reasons["denied"], "Topic Authorization Failed") || !strings.Contains(reasons["invalid"], "Invalid Record") || len(reasons) != 2 {
		t.Fatalf("dead letters' reasons %q", reasons)
	}
	if st := s.Stats(); st.Scored != 2 || st.DeadLetters != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A hot tier that cannot be read fails the batch (it is fetched again);
// a publish that never succeeds gives up when its context ends.
func TestScorerErrorsFailTheBatch(t *testing.T) {
	reader := &fakeReader{err: errTransient}
	s := newTestScorer(t, ScorerConfig{}, reader, nil, &fakeWriter{})
	batch := []record{requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "r", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1}, schemas.Protobuf)}
	if err := newScoreWorker(s, 0).process(context.Background(), context.Background(), batch); !errors.Is(err, errTransient) {
		t.Fatalf("err %v", err)
	}
	down := &fakeWriter{fail: func(int, []kafka.Message) error { return errTransient }}
	s = newTestScorer(t, ScorerConfig{}, &fakeReader{}, nil, down)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := newScoreWorker(s, 0).process(ctx, ctx, batch); err == nil {
		t.Fatal("a batch whose responses were never acknowledged succeeded")
	}
}

// A replay answers every request, to the results topic, and counts bad
// ones instead of dead-lettering them.
func TestScorerReplay(t *testing.T) {
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{Replay: true}, &fakeReader{}, nil, out)
	src := &fakeSource{records: []record{
		requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "r", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1, ReplyTopic: "x"}, schemas.Protobuf),
		{offset: 1, value: []byte("\xff")},
	}}
	w := newScoreWorker(s, 0)
	l := &loop{src: src, h: w, topic: "req", end: 2}
	if err := l.replay(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if got := out.written(); len(got) != 1 || got[0].Topic != "res" {
		t.Fatalf("replay wrote %v", got)
	}
	if w.stats.Records != 2 || w.stats.Bad != 1 {
		t.Fatalf("stats %+v", w.stats)
	}
	if _, err := newTestScorer(t, ScorerConfig{}, &fakeReader{}, nil, out).Replay(context.Background(), ReplayRange{}, nil); err == nil {
		t.Fatal("a scorer not configured for replay replayed")
	}
}

func TestRewardModel(t *testing.T) {
	m := DefaultRewardModel()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]func(*RewardModel){
		"impression weight": func(m *RewardModel) { m.Weights[0] = 1 },
		"negative weight":   func(m *RewardModel) { m.Weights[2] = -1 },
		"negative lambda":   func(m *RewardModel) { m.Lambda = -1 },
	} {
		m := DefaultRewardModel()
		bad(&m)
		if m.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	own := state.Counts{ByType: [state.NumEventTypes]int64{10, 10}}
	a := m.Posterior(state.Counts{ByType: [state.NumEventTypes]int64{10, 0}}, &own, 0)
	if a.Alpha() != 11 || a.Beta() != 11 {
		t.Fatalf("posterior Beta(%v, %v), want Beta(11, 11)", a.Alpha(), a.Beta())
	}
	if v := m.Version(); v != "beta(1,1);w=1,0,0,0;lambda=1" {
		t.Fatalf("version %q", v)
	}
}

// TestRewardModelDecay checks the decayed posterior against its
// definition, and that a posterior computed at one time and rescaled to
// another equals the one computed there.
func TestRewardModelDecay(t *testing.T) {
	m := RewardModel{Prior: sampler.Prior{Alpha: 2, Beta: 3}, Weights: [state.NumEventTypes]float64{0, 1, 0, 0, 0.5}, Lambda: 1,
		Decay: sampler.Decay{HalfLife: time.Hour}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	const hour = int64(time.Hour / time.Millisecond)
	var c state.Counts
	type ev struct {
		typ int
		at  int64
	}
	events := []ev{{0, 0}, {0, hour}, {1, hour}, {0, 2 * hour}, {4, 3 * hour}, {0, 3 * hour}, {1, 0}}
	for _, e := range events {
		c.Observe(e.typ, e.at, m.Decay)
	}
	at := 4 * hour
	var trials, reward float64
	for _, e := range events {
		w := math.Exp2(-float64(at-e.at) / float64(hour))
		if e.typ == 0 {
			trials += w
		} else {
			reward += m.Weights[e.typ] * w
		}
	}
	a := m.Posterior(c, nil, at)
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-12*want }
	if !near(a.Alpha(), 2+reward) || !near(a.Beta(), 3+max(trials-reward, 0)) {
		t.Fatalf("Beta(%v, %v), want Beta(%v, %v)", a.Alpha(), a.Beta(), 2+reward, 3+max(trials-reward, 0))
	}
	for _, from := range []int64{0, 2 * hour, 10 * hour} {
		b := m.Posterior(c, nil, from)
		m.rescale(&b, m.Decay.Factor(at-from))
		if !near(b.Alpha(), a.Alpha()) || !near(b.Beta(), a.Beta()) {
			t.Errorf("from %d: rescaled Beta(%v, %v), want Beta(%v, %v)", from, b.Alpha(), b.Beta(), a.Alpha(), a.Beta())
		}
	}
	// The user's own counts decay alike: the same events as the user's,
	// at λ = 1, add the same decayed reward and failures again.
	p := m.Posterior(c, &c, at)
	if !near(p.Alpha(), 2+2*reward) || !near(p.Beta(), 3+2*max(trials-reward, 0)) {
		t.Fatalf("with the user's own counts: Beta(%v, %v), want Beta(%v, %v)", p.Alpha(), p.Beta(), 2+2*reward, 3+2*max(trials-reward, 0))
	}
	if v := m.Version(); v != "beta(2,3);w=1,0,0,0.5;lambda=1;halflife=1h0m0s" {
		t.Fatalf("version %q", v)
	}
	m.Decay.HalfLife = -1
	if m.Validate() == nil {
		t.Fatal("a negative half-life was accepted")
	}
}

// The scorer's cache over time, on a fake clock: an arm is served from the
// cache within CacheMaxAge, served and refreshed in the background past
// it, and read again before use past CacheMaxStale when no refresh ran.
func TestScorerCacheAges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		arm := state.Arm{Context: "c", Item: "a"}
		reader := &fakeReader{counts: map[state.Arm]state.Counts{arm: {ByType: [state.NumEventTypes]int64{10, 1}}}}
		s := newTestScorer(t, ScorerConfig{CacheMaxAge: time.Second, CacheMaxStale: 10 * time.Second}, reader, nil, &fakeWriter{})
		w := newScoreWorker(s, 0)
		score := func() {
			t.Helper()
			req := requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "r", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1}, schemas.Protobuf)
			if err := w.process(t.Context(), t.Context(), []record{req}); err != nil {
				t.Fatal(err)
			}
		}
		reads := func() int {
			reader.mu.Lock()
			defer reader.mu.Unlock()
			return reader.reads
		}
		steps := []struct {
			name               string
			wait               time.Duration
			refresh            bool // the background refresh runs meanwhile
			reads, hits, stale int
			refreshed          int64
		}{
			{name: "first use reads", reads: 1},
			{name: "within the maximum age: cached", wait: 900 * time.Millisecond, reads: 1, hits: 1},
			{name: "past the maximum age: cached and marked", wait: 200 * time.Millisecond, reads: 1, hits: 2, stale: 1},
			{name: "the refresh reads it again", wait: 300 * time.Millisecond, refresh: true, reads: 2, hits: 3, stale: 1, refreshed: 1},
			{name: "past the maximum staleness: read before use", wait: 11 * time.Second, reads: 3, hits: 3, stale: 1, refreshed: 1},
		}
		for _, st := range steps {
			if st.refresh {
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { defer close(done); s.refreshCache(ctx) }()
				time.Sleep(st.wait)
				synctest.Wait()
				cancel()
				<-done
			} else {
				time.Sleep(st.wait)
			}
			score()
			got := s.Stats()
			if reads() != st.reads || got.CacheHits != int64(st.hits) || got.CacheStale != int64(st.stale) || got.CacheRefreshed != st.refreshed {
				t.Fatalf("%s: %d reads, %d hits, %d stale, %d refreshed; want %d, %d, %d, %d",
					st.name, reads(), got.CacheHits, got.CacheStale, got.CacheRefreshed, st.reads, st.hits, st.stale, st.refreshed)
			}
		}
	})
}

// A request may have its response sent only to the results topic or a
// topic with an allowed prefix; one naming another topic, the pipeline's
// own or an internal one is dead-lettered at once and nothing is written
// there.
func TestScorerReplyTopicAllowlist(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{}}
	cases := []struct {
		topic   string
		allowed bool
	}{
		{"res", true},
		{"score-replies.client-1", true},
		{"interactions", false},
		{"req", false},
		{"interactions.dlq", false},
		{"score-replies.x.dlq", false},
		{"__consumer_offsets", false},
		{"__transaction_state", false},
		{"other-team-topic", false},
	}
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{}, reader, nil, out)
	w := newScoreWorker(s, 0)
	var batch []record
	for i, tc := range cases {
		batch = append(batch, requestRecord(t, int64(i), &schemas.ScoreRequest{RequestId: tc.topic, UserId: "u", Context: "c",
			Candidates: []string{"a"}, K: 1, ReplyTopic: tc.topic}, schemas.Protobuf))
	}
	if err := w.process(t.Context(), t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // request id → the topic of its response
	for _, m := range out.written() {
		if m.Topic != "req.dlq" {
			got[decodeResponse(t, m).GetRequestId()] = m.Topic
		}
	}
	for _, tc := range cases {
		if tc.allowed && got[tc.topic] != tc.topic {
			t.Errorf("reply topic %s: response went to %q", tc.topic, got[tc.topic])
		}
	}
	for _, m := range out.written() {
		for _, tc := range cases {
			if !tc.allowed && m.Topic == tc.topic {
				t.Errorf("a record was written to %s", tc.topic)
			}
		}
	}
	if dead := s.Stats().DeadLetters; dead != 7 || len(out.written()) != len(cases) {
		t.Errorf("%d dead letters, want 7", dead)
	}
	for _, m := range out.written() {
		if m.Topic == "req.dlq" && headerValue(m.Headers, HeaderErrorField) != "reply_topic" {
			t.Errorf("dead letter for %q", headerValue(m.Headers, HeaderError))
		}
	}
}

// brokerLimit fails a write as a broker with max.message.bytes = limit
// does: a batch past the limit is refused whole, each message with
// MESSAGE_TOO_LARGE, though each alone may fit.
func brokerLimit(limit int) func(int, []kafka.Message) error {
	return func(_ int, msgs []kafka.Message) error {
		total := 0
		for _, m := range msgs {
			total += len(m.Key) + len(m.Value)
			for _, h := range m.Headers {
				total += len(h.Key) + len(h.Value)
			}
		}
		if total <= limit {
			return nil
		}
		werrs := make(kafka.WriteErrors, len(msgs))
		for i := range werrs {
			werrs[i] = kafka.MessageSizeTooLarge
		}
		return werrs
	}
}

// Responses a broker refuses as too large are written one by one; a
// response too large even alone sends its request to the dead-letter
// topic with the reason; the partition goes on.
func TestScorerResponsesTooLarge(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{}}
	out := &fakeWriter{fail: brokerLimit(64 << 10)}
	s := newTestScorer(t, ScorerConfig{}, reader, nil, out)
	w := newScoreWorker(s, 0)
	long := make([]string, 2000)
	for i := range long {
		long[i] = fmt.Sprintf("item-%03d-%s", i, strings.Repeat("x", 90))
	}
	var batch []record
	for i := range 40 { // 40 responses of 2.5 KiB: 100 KiB together
		batch = append(batch, requestRecord(t, int64(i), &schemas.ScoreRequest{RequestId: fmt.Sprint("r", i), UserId: "u", Context: "c",
			Candidates: long[:20], K: 20}, schemas.Protobuf))
	}
	batch = append(batch, requestRecord(t, 40, &schemas.ScoreRequest{RequestId: "huge", UserId: "u", Context: "c", Candidates: long, K: 2000}, schemas.Protobuf))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.process(ctx, ctx, batch); err != nil {
		t.Fatalf("the batch was not published: %v", err)
	}
	answered, dead := 0, 0
	for _, m := range out.written() {
		if m.Topic == "req.dlq" {
			dead++
			if !strings.Contains(headerValue(m.Headers, HeaderError), "larger than topic res accepts") || headerValue(m.Headers, HeaderOriginOffset) != "40" {
				t.Errorf("dead letter: %s at %s", headerValue(m.Headers, HeaderError), headerValue(m.Headers, HeaderOriginOffset))
			}
			continue
		}
		answered++
	}
	if answered != 40 || dead != 1 || s.Stats().Scored != 40 || s.Stats().DeadLetters != 1 {
		t.Fatalf("%d answered, %d dead letters, stats %+v; want 40 and 1", answered, dead, s.Stats())
	}
}

// A dead letter its topic refuses even bounded is written reduced to its
// origin and reason.
func TestDeadLettersReducedWhenRefused(t *testing.T) {
	out := &fakeWriter{fail: brokerLimit(2 << 10)}
	big := &record{offset: 7, key: []byte("k"), value: make([]byte, 100<<10), headers: []kafka.Header{{Key: "trace", Value: make([]byte, 1000)}}}
	small := &record{offset: 8, key: []byte("k"), value: []byte("x")}
	msgs := []kafka.Message{deadLetter("ev", 0, big, errors.New("malformed")), deadLetter("ev", 0, small, errors.New("malformed"))}
	if err := writeDeadLetters(t.Context(), out, msgs); err != nil {
		t.Fatal(err)
	}
	got := out.written()
	if len(got) != 2 {
		t.Fatalf("%d dead letters written, want 2", len(got))
	}
	r := got[0]
	if len(r.Value) != 0 || headerValue(r.Headers, HeaderTruncated) != strconv.Itoa(100<<10) || headerValue(r.Headers, HeaderOriginOffset) != "7" ||
		headerValue(r.Headers, HeaderError) != "malformed" || headerValue(r.Headers, HeaderHeadersTruncated) != "1005" || headerValue(r.Headers, "trace") != "" {
		t.Fatalf("reduced dead letter: %d-byte value, headers %v", len(r.Value), r.Headers)
	}
	if string(got[1].Value) != "x" {
		t.Fatalf("the small dead letter was changed: %v", got[1])
	}
	// A cut key keeps the original's size, noted once.
	huge := &record{offset: 9, key: make([]byte, 2<<20), value: []byte("x")}
	r = reducedDeadLetter(deadLetter("ev", 0, huge, errors.New("malformed")))
	n := 0
	for _, h := range r.Headers {
		if h.Key == HeaderKeyTruncated {
			n++
		}
	}
	if len(r.Key) != 256 || n != 1 || headerValue(r.Headers, HeaderKeyTruncated) != strconv.Itoa(2<<20) {
		t.Fatalf("reduced key %d bytes, %d size headers, size %q", len(r.Key), n, headerValue(r.Headers, HeaderKeyTruncated))
	}
}

// A request asking for propensities gets them on every ranked item, above 0
// and at most 1, the top-k one at least the slot one, the same again for
// the same seed; in mean mode they are 1; a request not asking gets none.
func TestScorerPropensities(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{
		{Context: "c", Item: "a"}: {ByType: [state.NumEventTypes]int64{100, 30}},
		{Context: "c", Item: "b"}: {ByType: [state.NumEventTypes]int64{100, 25}},
		{Context: "c", Item: "d"}: {ByType: [state.NumEventTypes]int64{100, 5}},
	}}
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{PropensityDraws: 2000}, reader, nil, out)
	w := newScoreWorker(s, 0)
	req := func(id string, mode schemas.ExplorationMode, props bool) *schemas.ScoreRequest {
		return &schemas.ScoreRequest{RequestId: id, UserId: "u", Context: "c", Candidates: []string{"a", "b", "d", "new"}, K: 2,
			Mode: mode, Seed: seed(11), Propensities: props}
	}
	batch := []record{
		requestRecord(t, 0, req("t1", schemas.ModeThompson, true), schemas.Protobuf),
		requestRecord(t, 1, req("t2", schemas.ModeThompson, true), schemas.JSON),
		requestRecord(t, 2, req("m", schemas.ModeMean, true), schemas.Protobuf),
		requestRecord(t, 3, req("none", schemas.ModeThompson, false), schemas.Protobuf),
	}
	if err := w.process(t.Context(), t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	got := map[string]*schemas.ScoreResponse{}
	for _, m := range out.written() {
		r := decodeResponse(t, m)
		got[r.GetRequestId()] = r
	}
	for _, id := range []string{"t1", "t2"} {
		for _, it := range got[id].GetItems() {
			if p, q := it.GetPropensity(), it.GetTopkPropensity(); !(p > 0) || p > 1 || q < p || q > 1 {
				t.Fatalf("%s/%s: propensities %v, %v", id, it.GetItemId(), p, q)
			}
		}
	}
	a, b := got["t1"].GetItems(), got["t2"].GetItems()
	for i := range a {
		if a[i].GetItemId() != b[i].GetItemId() || a[i].GetPropensity() != b[i].GetPropensity() {
			t.Fatalf("the same seed gave %v and %v", a, b)
		}
	}
	for _, it := range got["m"].GetItems() {
		if it.GetPropensity() != 1 || it.GetTopkPropensity() != 1 {
			t.Fatalf("mean mode: %v", it)
		}
	}
	for _, it := range got["none"].GetItems() {
		if it.GetPropensity() != 0 || it.GetTopkPropensity() != 0 {
			t.Fatalf("propensities not asked for: %v", it)
		}
	}
}

// With a decisions topic, every ranked request's decision follows its
// response, keyed by user, with every candidate's posterior, the ranking
// and its propensities (computed though the request did not ask), the
// seed and the model version; a request naming the decisions topic as its
// reply topic goes to the dead-letter topic; a decision too large for its
// topic is dropped and counted while the responses are written.
func TestScorerLogsDecisions(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{
		{Context: "c", Item: "a"}: {ByType: [state.NumEventTypes]int64{100, 30}},
		{Context: "c", Item: "b"}: {ByType: [state.NumEventTypes]int64{100, 25}},
	}}
	huge := make([]string, 3000)
	for i := range huge {
		huge[i] = fmt.Sprintf("item-%04d-%s", i, strings.Repeat("x", 40))
	}
	// The decisions topic takes 64 KiB at most: the huge request's
	// decision (3,000 candidates with their posteriors) is refused.
	limit := brokerLimit(64 << 10)
	out := &fakeWriter{fail: func(call int, msgs []kafka.Message) error {
		if msgs[0].Topic == "dec" {
			return limit(call, msgs)
		}
		return nil
	}}
	// Replies may go to topics starting "de": never to the decisions topic.
	s := newTestScorer(t, ScorerConfig{DecisionsTopic: "dec", PropensityDraws: 100, ReplyTopicPrefixes: []string{"de"}}, reader, nil, out)
	w := newScoreWorker(s, 0)
	batch := []record{
		requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "r1", UserId: "u1", Context: "c", Candidates: []string{"a", "b", "new"}, K: 2, Seed: seed(5)}, schemas.Protobuf),
		requestRecord(t, 1, &schemas.ScoreRequest{RequestId: "r2", UserId: "u2", Context: "c", Candidates: []string{"b", "a"}, K: 1, Mode: schemas.ModeMean}, schemas.JSON),
		requestRecord(t, 2, &schemas.ScoreRequest{RequestId: "sneaky", UserId: "u3", Context: "c", Candidates: []string{"a"}, K: 1, ReplyTopic: "dec"}, schemas.Protobuf),
		requestRecord(t, 3, &schemas.ScoreRequest{RequestId: "huge", UserId: "u4", Context: "c", Candidates: huge, K: 1}, schemas.Protobuf),
	}
	if err := w.process(t.Context(), t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	decisions := map[string]*schemas.Decision{}
	responses, dead := 0, 0
	for _, m := range out.written() {
		switch m.Topic {
		case "dec":
			d := &schemas.Decision{}
			if err := schemas.Protobuf.DecodeDecision(schemas.DefaultLimits(), m.Value, d); err != nil {
				t.Fatal(err)
			}
			if string(m.Key) != d.GetUserId() {
				t.Fatalf("decision of %s keyed %q", d.GetUserId(), m.Key)
			}
			decisions[d.GetRequestId()] = d
		case "res":
			responses++
		case "req.dlq":
			dead++
		}
	}
	if responses != 3 || dead != 1 || len(decisions) != 2 || decisions["sneaky"] != nil {
		t.Fatalf("%d responses, %d dead letters, decisions %v", responses, dead, decisions)
	}
	d := decisions["r1"]
	if d.GetSeed() != 5 || d.GetK() != 2 || len(d.GetAlpha()) != 3 || d.GetAlpha()[0] != 31 || d.GetBeta()[0] != 71 ||
		d.GetAlpha()[2] != 1 || d.GetBeta()[2] != 1 || len(d.GetItems()) != 2 || d.GetPropensityDraws() != 100 || d.GetDecidedTimeMs() == 0 ||
		d.GetModelVersion() != s.cfg.ModelVersion {
		t.Fatalf("decision r1: %v", d)
	}
	for _, it := range d.GetItems() {
		if !(it.GetPropensity() > 0) || it.GetTopkPropensity() < it.GetPropensity() {
			t.Fatalf("decision r1 without propensities: %v", it)
		}
	}
	if it := decisions["r2"].GetItems()[0]; it.GetPropensity() != 1 || decisions["r2"].GetMode() != schemas.ModeMean {
		t.Fatalf("decision r2 (mean mode): %v", decisions["r2"])
	}
	if st := s.Stats(); st.Decisions != 2 || st.DecisionsDropped != 1 {
		t.Fatalf("stats: %d decisions, %d dropped; want 2 and 1", st.Decisions, st.DecisionsDropped)
	}
}

// A request's W3C trace context reaches its response and its decision; a
// request without one gets the shared headers; a bad request's dead letter
// keeps it with the rest of its headers.
func TestScorerCarriesTraceContext(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{}}
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{DecisionsTopic: "dec", PropensityDraws: 10}, reader, nil, out)
	w := newScoreWorker(s, 0)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traced := requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "traced", UserId: "u", Candidates: []string{"a"}, K: 1}, schemas.Protobuf)
	traced.headers = append(traced.headers, kafka.Header{Key: HeaderTraceparent, Value: []byte(parent)},
		kafka.Header{Key: HeaderTracestate, Value: []byte("vendor=x")}, kafka.Header{Key: "other", Value: []byte("not carried")})
	plain := requestRecord(t, 1, &schemas.ScoreRequest{RequestId: "plain", UserId: "u", Candidates: []string{"a"}, K: 1}, schemas.Protobuf)
	bad := record{offset: 2, key: []byte("u"), value: []byte("not protobuf"), headers: []kafka.Header{{Key: HeaderTraceparent, Value: []byte(parent)}}}
	if err := w.process(t.Context(), t.Context(), []record{traced, plain, bad}); err != nil {
		t.Fatal(err)
	}
	// Each message by what it answers: the request id of a response or a
	// decision, "dead letter" for the bad request's.
	seen := 0
	for _, m := range out.written() {
		id := string(m.Key)
		switch m.Topic {
		case "dec":
			d := &schemas.Decision{}
			if err := schemas.Protobuf.DecodeDecision(schemas.DefaultLimits(), m.Value, d); err != nil {
				t.Fatal(err)
			}
			id = d.GetRequestId()
		case "req.dlq":
			id = "dead letter"
		}
		switch id {
		case "traced", "dead letter":
			if headerValue(m.Headers, HeaderTraceparent) != parent {
				t.Errorf("%s on %s: traceparent %q", id, m.Topic, headerValue(m.Headers, HeaderTraceparent))
			}
			if id == "traced" && (headerValue(m.Headers, HeaderTracestate) != "vendor=x" || headerValue(m.Headers, "other") != "") {
				t.Errorf("%s on %s: headers %v", id, m.Topic, m.Headers)
			}
			seen++
		case "plain":
			if len(m.Headers) != 1 || headerValue(m.Headers, HeaderTraceparent) != "" {
				t.Errorf("plain on %s: headers %v", m.Topic, m.Headers)
			}
		}
	}
	if seen != 3 {
		t.Fatalf("%d messages with the trace context, want the response, the decision and the dead letter", seen)
	}
}

// A request in any JSON form gets its response in that form: protobuf's
// canonical JSON with lowerCamelCase names, with the .proto's names, or
// the simple form; and they rank alike.
func TestScorerAnswersInTheRequestsForm(t *testing.T) {
	reader := &fakeReader{counts: map[state.Arm]state.Counts{{Context: "c", Item: "a"}: {ByType: [state.NumEventTypes]int64{10, 9}}}}
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{}, reader, nil, out)
	w := newScoreWorker(s, 0)
	forms := map[string]schemas.Codec{"camel": schemas.ProtoJSON, "names": schemas.ProtoJSONNames, "simple": schemas.JSON}
	var batch []record
	for id, form := range forms {
		batch = append(batch, requestRecord(t, int64(len(batch)), &schemas.ScoreRequest{RequestId: id, UserId: "u", Context: "c",
			Candidates: []string{"b", "a"}, K: 2, Mode: schemas.ModeMean}, form))
	}
	if err := w.process(t.Context(), t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"camel":  {`"requestId":"camel"`, `"modelVersion"`, `"EXPLORATION_MODE_MEAN"`},
		"names":  {`"request_id":"names"`, `"model_version"`, `"EXPLORATION_MODE_MEAN"`},
		"simple": {`"request_id":"simple"`, `"model_version"`, `"mode":"mean"`},
	}
	for _, m := range out.written() {
		id := string(m.Key)
		for _, frag := range want[id] {
			if !strings.Contains(strings.ReplaceAll(string(m.Value), " ", ""), frag) {
				t.Errorf("%s: response %s lacks %s", id, m.Value, frag)
			}
		}
		if r := decodeResponse(t, m); r.GetItems()[0].GetItemId() != "a" {
			t.Errorf("%s: ranked %v", id, r.GetItems())
		}
		delete(want, id)
	}
	if len(want) != 0 {
		t.Fatalf("no response to %v", want)
	}
}

// A response's timing says where its time went: the wait in the topic
// (from the record's timestamp), the batch's lookup and its own sampling,
// within its time in the scorer.
func TestResponseTimingBreakdown(t *testing.T) {
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{}, &fakeReader{}, nil, out)
	cands := make([]string, 2000)
	for i := range cands {
		cands[i] = "i" + strconv.Itoa(i)
	}
	r := requestRecord(t, 0, &schemas.ScoreRequest{RequestId: "r", UserId: "u", Context: "c", Candidates: cands, K: 10}, schemas.Protobuf)
	r.time = time.Now().Add(-40 * time.Millisecond)
	ctx := context.Background()
	if err := newScoreWorker(s, 0).process(ctx, ctx, []record{r}); err != nil {
		t.Fatal(err)
	}
	tm := decodeResponse(t, out.written()[0]).GetTiming()
	if tm.GetQueueMicros() < 40_000 || tm.GetQueueMicros() > 40_000_000 {
		t.Errorf("queue %d µs, want the 40 ms since the record's timestamp", tm.GetQueueMicros())
	}
	if tm.GetSamplingMicros() <= 0 || tm.GetLookupMicros() < 0 || tm.GetSamplingMicros()+tm.GetLookupMicros() > tm.GetScoringMicros()+1 {
		t.Errorf("timing %v: want sampling > 0 and lookup + sampling within scoring", tm)
	}
}
