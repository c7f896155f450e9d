package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/banditstream/banditstream/consumers/internal/armcache"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// scoreWorker scores the batches of one partition. Its buffers grow to the
// largest batch and are reused, so a steady stream of requests ranks
// without allocating per candidate.
type scoreWorker struct {
	s         *Scorer
	partition int

	reqs    []*schemas.ScoreRequest // decoded, reused
	live    []liveRequest
	arms    []sampler.Arm             // every live request's candidates, back to back
	fetched []int64                   // with decay: the Unix ns each of arms was computed at
	sources []schemas.PosteriorSource // when a request explains: where each of arms came from
	expl    []schemas.Explanation
	misses  []int32
	missAt  []missRef
	entries []armcache.Entry
	ranker  sampler.Ranker
	ranked  []sampler.Ranked
	slot    []float64 // propensities of a request that asks for them
	topK    []float64
	// decisions are the batch's decisions (DecisionsTopic), encoded with
	// dec, alphas and betas.
	decisions     []kafka.Message
	dec           schemas.Decision
	alphas, betas []float64
	items         []*schemas.RankedItem
	resp          schemas.ScoreResponse
	timing        schemas.Timing
	seed          uint64 // of the response being encoded
	lookupMicros  int64  // the batch's lookup time
	values        []byte // the batch's encoded responses, back to back
	out           []kafka.Message
	origin        []int // out[i] answers batch[origin[i]]; -1 for a dead letter
	seeds         sampler.Rand
	// versions are the model versions naming each prior label met, so a
	// response's label is not built per request.
	versions map[string]string
	stats    ReplayStats // of a replay
	// parked are responses waiting for their reply topics (see park).
	parked        []parkedResponse
	lastParkedTry time.Time
	// prefixes are the frames of the protobuf values written, per topic
	// (with a Registry).
	prefixes map[string][]byte
}

// liveRequest is a request to score: batch[rec] decoded into reqs[i]; its
// candidates' posteriors are arms[off : off+n].
type liveRequest struct {
	rec, off int
	req      *schemas.ScoreRequest
	codec    schemas.Codec
	// prefix is the response's schema-registry frame (with a Registry and
	// protobuf), or why the registry refused one.
	prefix    []byte
	prefixErr error
	user      *state.SessionStats
}

// missRef is a candidate to read from the hot tier: arms[pos] is arm.
type missRef struct {
	pos int
	arm state.Arm
}

func newScoreWorker(s *Scorer, partition int) *scoreWorker {
	w := &scoreWorker{s: s, partition: partition}
	w.seeds.Seed(uint64(time.Now().UnixNano()) ^ uint64(partition)<<32)
	return w
}

// start fetches from the committed offset, or from the earliest record
// when the group has none.
func (w *scoreWorker) start(ctx context.Context, offset int64) (int64, error) {
	if offset >= 0 {
		return offset, nil
	}
	return w.s.earliest(ctx, w.partition)
}

// handle answers a batch: nil once every response is acknowledged.
func (w *scoreWorker) handle(ctx, member context.Context, batch []record) error {
	if w.s.cfg.Replay {
		w.stats.Records += len(batch)
	}
	span := startBatchSpan(ctx, w.s.cfg.Tracer, SpanScoreBatch, w.s.cfg.Topic, w.partition, batch)
	err := w.process(ctx, member, batch)
	if span != nil {
		dead, candidates := 0, 0
		for _, o := range w.origin {
			if o < 0 {
				dead++
			}
		}
		for _, l := range w.live {
			candidates += len(l.req.GetCandidates())
		}
		endBatchSpan(span, err, attribute.Int("banditstream.requests.scored", len(w.live)),
			attribute.Int("banditstream.candidates", candidates), attribute.Int("banditstream.dead_letters", dead))
	}
	return err
}

// process scores one batch and publishes its responses and dead letters.
// ctx bounds the work (the drain timeout); member is the consumer's own
// context, which session loads started here live under.
func (w *scoreWorker) process(ctx, member context.Context, batch []record) error {
	s := w.s
	received := time.Now()
	w.out, w.origin, w.live, w.values, w.decisions = w.out[:0], w.origin[:0], w.live[:0], w.values[:0], w.decisions[:0]
	nCand := 0
	for i := range batch {
		r := &batch[i]
		req, codec, err := w.decode(ctx, len(w.live), r)
		if err != nil {
			if !errors.Is(err, schemas.ErrInvalid) {
				return fmt.Errorf("schema registry: %w", err)
			}
			if s.cfg.Replay {
				w.stats.Bad++
				continue
			}
			w.out = append(w.out, w.deadLetter(r, err))
			w.origin = append(w.origin, -1)
			continue
		}
		if d := req.GetDeadlineMs(); d > 0 && d < received.UnixMilli() && !s.cfg.Replay {
			s.pastDeadline.Add(1)
			continue
		}
		w.live = append(w.live, liveRequest{rec: i, off: nCand, req: req, codec: codec})
		nCand += len(req.GetCandidates())
	}
	if s.cfg.Registry != nil {
		if err := w.frames(ctx); err != nil {
			return err
		}
	}
	if n := len(w.out); n > 0 {
		s.deadLetters.Add(int64(n))
		s.log.Info("dead letters", "partition", w.partition, "count", n)
	}
	if len(w.live) > 0 {
		looking := time.Now()
		if err := w.users(ctx, member); err != nil {
			return err
		}
		if err := w.lookup(ctx, received, nCand); err != nil {
			return err
		}
		w.lookupMicros = time.Since(looking).Microseconds()
		for i := range w.live {
			w.rank(&w.live[i], batch, received)
		}
	}
	w.retryParked(ctx)
	publishing := time.Now()
	redirected, parked, err := w.publish(ctx, batch)
	s.cfg.PublishSeconds.Observe(time.Since(publishing).Seconds())
	if err == nil {
		err = w.publishDecisions(ctx)
	}
	if err != nil {
		// A write abandoned at the deadline may still read its values:
		// the next batch encodes into a new buffer.
		w.values = nil
		return err
	}
	s.deadLetters.Add(int64(redirected))
	s.scored.Add(int64(len(w.live) - redirected - parked))
	s.candidates.Add(int64(nCand))
	return nil
}

// decode decodes and validates a request into the i-th reusable message.
func (w *scoreWorker) decode(ctx context.Context, i int, r *record) (*schemas.ScoreRequest, schemas.Codec, error) {
	if i == len(w.reqs) {
		w.reqs = append(w.reqs, &schemas.ScoreRequest{})
	}
	req := w.reqs[i]
	codec, data, err := payload(ctx, w.s.cfg.Limits, w.s.cfg.Registry, w.s.cfg.Topic, requestType, r)
	if err != nil {
		return nil, 0, err
	}
	// The request lives no longer than the batch's records: decode
	// protobuf without copying its strings.
	if codec == schemas.Protobuf {
		err = schemas.DecodeScoreRequestAliased(w.s.cfg.Limits, data, req)
	} else {
		// The response answers in the request's JSON form.
		codec, err = codec.DecodeScoreRequestForm(w.s.cfg.Limits, data, req)
	}
	if err != nil {
		return nil, 0, err
	}
	if err := w.s.cfg.Limits.CheckScoreRequest(req); err != nil {
		return nil, 0, err
	}
	// A replay sends every response to ResultsTopic: reply topics do not
	// matter there.
	if t := req.GetReplyTopic(); t != "" && !w.s.cfg.Replay {
		if err := w.s.cfg.checkReplyTopic(t); err != nil {
			return nil, 0, err
		}
	}
	return req, codec, nil
}

// users reads the session stats of the batch's users and starts the
// sessions of those who are not hot, waiting at most SessionWait for them.
func (w *scoreWorker) users(ctx, member context.Context) error {
	s := w.s
	if s.sessions == nil {
		return nil
	}
	index := make(map[string]int, len(w.live))
	var users []string
	for _, l := range w.live {
		u := l.req.GetUserId()
		if _, ok := index[u]; !ok {
			index[u] = len(users)
			users = append(users, u)
		}
	}
	stats, err := s.sessions.Sessions(ctx, users)
	if err != nil {
		return err
	}
	var cold []string
	for i, st := range stats {
		if !st.Loaded {
			cold = append(cold, users[i])
		}
	}
	if len(cold) > 0 {
		if loaded := w.startSessions(member, cold); loaded {
			again, err := s.sessions.Sessions(ctx, cold)
			if err != nil {
				return err
			}
			for i, u := range cold {
				stats[index[u]] = again[i]
			}
		}
	}
	for i := range w.live {
		w.live[i].user = &stats[index[w.live[i].req.GetUserId()]]
	}
	return nil
}

// startSessions loads the sessions of users in the background and waits
// up to SessionWait; it reports whether the loads finished in time. With
// every load slot busy it starts nothing: the users' next requests try
// again.
func (w *scoreWorker) startSessions(member context.Context, users []string) bool {
	s := w.s
	select {
	case s.loads <- struct{}{}:
	default:
		return false
	}
	done := make(chan struct{})
	s.loading.Add(1)
	go func() {
		defer s.loading.Done()
		defer func() { <-s.loads }()
		defer close(done)
		ctx, cancel := context.WithTimeout(member, 30*time.Second)
		defer cancel()
		epoch, err := s.sessions.Epoch(ctx)
		if err != nil || epoch == "" {
			// Lost and not recovered yet: ingest recovers the hot tier.
			return
		}
		if err := s.sessions.EnsureLoaded(ctx, users, epoch); err != nil {
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, state.ErrHotFull):
				// Ingest reports a full hot tier; the users are ranked
				// without their own counts meanwhile.
				s.log.Debug("loading sessions: hot tier full", "users", len(users))
			default:
				s.log.Warn("loading sessions", "users", len(users), "err", err)
			}
			return
		}
		s.sessionLoads.Add(int64(len(users)))
	}()
	t := time.NewTimer(s.cfg.SessionWait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// lookup fills w.arms with every live candidate's global posterior: from
// the cache, or read from the hot tier in one pipeline for the arms
// missing or too old (an arm never counted gets the prior).
func (w *scoreWorker) lookup(ctx context.Context, now time.Time, n int) error {
	s := w.s
	if cap(w.arms) < n {
		w.arms = make([]sampler.Arm, n, n+n/4)
	}
	w.arms = w.arms[:n]
	var fetchedAt []int64 // with decay: when each posterior was computed
	if s.cfg.Model.Decay.On() {
		if cap(w.fetched) < n {
			w.fetched = make([]int64, n, cap(w.arms))
		}
		w.fetched = w.fetched[:n]
		fetchedAt = w.fetched
	}
	w.sources = w.sources[:0]
	for _, l := range w.live {
		if l.req.GetExplain() {
			w.sources = slices.Grow(w.sources, n)[:n]
			break
		}
	}
	w.missAt = w.missAt[:0]
	for _, l := range w.live {
		c := l.req.GetCandidates()
		if len(w.sources) > 0 && l.req.GetExplain() {
			for i := l.off; i < l.off+len(c); i++ {
				w.sources[i] = schemas.SourceCache // the misses are marked below
			}
		}
		var f []int64
		if fetchedAt != nil {
			f = fetchedAt[l.off : l.off+len(c)]
		}
		w.misses = s.cache.Lookup(l.req.GetContext(), c, now.UnixNano(), w.arms[l.off:l.off+len(c)], f, w.misses[:0])
		for _, i := range w.misses {
			w.missAt = append(w.missAt, missRef{pos: l.off + int(i), arm: state.Arm{Context: l.req.GetContext(), Item: c[i]}})
		}
	}
	if len(w.missAt) == 0 {
		return nil
	}
	unique := make(map[state.Arm]int, len(w.missAt))
	var arms []state.Arm
	for _, m := range w.missAt {
		if _, ok := unique[m.arm]; !ok {
			unique[m.arm] = len(arms)
			arms = append(arms, m.arm)
		}
	}
	fetched := time.Now().UnixNano()
	counts, err := s.arms.Counts(ctx, arms)
	if err != nil {
		return err
	}
	w.entries = w.entries[:0]
	for i, a := range arms {
		w.entries = append(w.entries, armcache.Entry{Context: a.Context, Item: a.Item, Arm: s.cfg.Model.arm(&counts[i], fetched/1e6)})
	}
	var prior int64
	for _, m := range w.missAt {
		j := unique[m.arm]
		w.arms[m.pos] = w.entries[j].Arm
		if fetchedAt != nil {
			fetchedAt[m.pos] = fetched
		}
		if len(w.sources) > 0 {
			w.sources[m.pos] = schemas.SourceHot
		}
		if counts[j].ByType == ([state.NumEventTypes]int64{}) {
			prior++
		}
	}
	s.priorArms.Add(prior)
	s.hotArms.Add(int64(len(w.missAt)) - prior)
	s.cache.Put(w.entries, fetched)
	return nil
}

// explain sets the explanation of each ranked item of l: its posterior,
// where the global part came from, and what the user's own counts added.
func (w *scoreWorker) explain(l *liveRequest, items []*schemas.RankedItem, atMs int64) {
	m := &w.s.cfg.Model
	w.expl = slices.Grow(w.expl[:0], len(items))[:len(items)]
	for i, r := range w.ranked {
		a := &w.arms[l.off+r.Index]
		e := &w.expl[i]
		*e = schemas.Explanation{Alpha: a.Alpha(), Beta: a.Beta(), Source: w.sources[l.off+r.Index]}
		if u := l.user; u != nil && m.Lambda > 0 {
			if uc, ok := u.Arms[state.Arm{Context: l.req.GetContext(), Item: items[i].GetItemId()}]; ok {
				e.UserAlpha, e.UserBeta = m.userPart(&uc, atMs)
			}
		}
		items[i].Explanation = e
	}
}

// rank ranks one request and appends its response.
func (w *scoreWorker) rank(l *liveRequest, batch []record, received time.Time) {
	s := w.s
	req := l.req
	sampling := time.Now()
	c := req.GetCandidates()
	arms := w.arms[l.off : l.off+len(c)]
	if s.cfg.Model.Decay.On() {
		// Every posterior was computed at its fetch: bring it to the time
		// the request was received.
		at, last, f := received.UnixMilli(), int64(-1), 1.0
		for i, fetched := range w.fetched[l.off : l.off+len(c)] {
			if ms := fetched / 1e6; ms != last {
				last, f = ms, s.cfg.Model.Decay.Factor(at-ms)
			}
			s.cfg.Model.rescale(&arms[i], f)
		}
	}
	explain := req.GetExplain()
	if explain {
		// The prior alone, whether cached or read: an arm without counts.
		prior := s.cfg.Model.Prior
		for i := range arms {
			if arms[i].Alpha() == prior.Alpha && arms[i].Beta() == prior.Beta {
				w.sources[l.off+i] = schemas.SourcePrior
			}
		}
	}
	version := s.cfg.ModelVersion
	if s.cfg.Priors != nil {
		p, label, ok := s.cfg.Priors.Prior(req.GetContext())
		if ok {
			s.cfg.Model.reprior(arms, p)
		}
		version = w.version(label)
	}
	if u := l.user; u != nil && len(u.Arms) > 0 && s.cfg.Model.Lambda > 0 {
		for i, item := range c {
			if uc, ok := u.Arms[state.Arm{Context: req.GetContext(), Item: item}]; ok {
				s.cfg.Model.personalize(&arms[i], &uc, received.UnixMilli())
			}
		}
	}
	mode, smode := sampler.Thompson, schemas.ModeThompson
	if req.GetMode() == schemas.ModeMean {
		mode, smode = sampler.Mean, schemas.ModeMean
	}
	// The response is encoded before the next request's: its seed lives
	// in the worker rather than on the heap.
	if req.Seed != nil {
		w.seed = req.GetSeed()
	} else {
		w.seed = w.seeds.Uint64()
	}
	seed := w.seed
	w.ranked = w.ranker.Rank(arms, int(req.GetK()), mode, seed, w.ranked)
	for len(w.items) < len(w.ranked) {
		w.items = append(w.items, &schemas.RankedItem{})
	}
	items := w.items[:len(w.ranked)]
	for i, r := range w.ranked {
		items[i].ItemId = c[r.Index]
		items[i].Score = r.Score
		items[i].Mean = arms[r.Index].Mean()
		items[i].Explanation = nil
		items[i].Propensity, items[i].TopkPropensity = 0, 0
	}
	if explain {
		w.explain(l, items, received.UnixMilli())
	}
	logged := s.cfg.DecisionsTopic != ""
	if req.GetPropensities() || logged {
		w.slot, w.topK = w.ranker.Propensities(arms, w.ranked, mode, s.cfg.PropensityDraws, seed, w.slot, w.topK)
		for i := range items {
			items[i].Propensity, items[i].TopkPropensity = w.slot[i], w.topK[i]
		}
	}
	scored := time.Now()
	if sent := req.GetSentTimeMs(); sent > 0 {
		s.cfg.RequestSeconds.Observe(max(float64(scored.UnixMilli()-sent)/1000, 0))
	}
	w.timing = schemas.Timing{
		SentTimeMs: req.GetSentTimeMs(), ReceivedTimeMs: received.UnixMilli(),
		ScoredTimeMs: scored.UnixMilli(), ScoringMicros: scored.Sub(received).Microseconds(),
		LookupMicros: w.lookupMicros, SamplingMicros: scored.Sub(sampling).Microseconds(),
	}
	if at := batch[l.rec].time; !at.IsZero() {
		w.timing.QueueMicros = max(received.Sub(at).Microseconds(), 0)
	}
	w.resp = schemas.ScoreResponse{
		RequestId: req.GetRequestId(), UserId: req.GetUserId(), Context: req.GetContext(),
		Items: items, ModelVersion: version, Timing: &w.timing, Mode: smode, Seed: &w.seed,
	}
	if logged {
		w.decide(l, &batch[l.rec], arms, items, seed, received)
	}
	start := len(w.values)
	err := l.prefixErr
	if err == nil {
		w.values = append(w.values, l.prefix...)
		w.values, err = l.codec.AppendScoreResponse(w.values, &w.resp)
	}
	if err != nil {
		// Only a response that cannot be encoded, or whose schema the
		// registry refused, gets here (the request was valid): report it
		// as the request's error.
		w.values = w.values[:start]
		w.out = append(w.out, w.deadLetter(&batch[l.rec], fmt.Errorf("encoding the response: %w", err)))
		w.origin = append(w.origin, -1)
		return
	}
	topic := w.responseTopic(req)
	value := w.values[start:len(w.values):len(w.values)]
	w.values = append(w.values, req.GetRequestId()...) // the key, in the batch's buffer too
	w.out = append(w.out, kafka.Message{
		Topic: topic, Key: w.values[len(value)+start : len(w.values) : len(w.values)], Value: value,
		Headers: withTrace(responseHeaders[l.codec], &batch[l.rec]),
	})
	w.origin = append(w.origin, l.rec)
}

// responseTopic is where req's response goes: its reply topic, or the
// results topic (always, in a replay).
func (w *scoreWorker) responseTopic(req *schemas.ScoreRequest) string {
	if t := req.GetReplyTopic(); t != "" && !w.s.cfg.Replay {
		return t
	}
	return w.s.cfg.ResultsTopic
}

// frames finds the schema-registry frame of each live protobuf response
// and of the decisions, asking the registry for those of topics not met
// before. The registry refusing a response's schema dead-letters its
// request, refusing the decisions' drops them (as their topic refusing
// them would); not answering fails the batch, to be retried.
func (w *scoreWorker) frames(ctx context.Context) error {
	s := w.s
	if w.prefixes == nil || len(w.prefixes) >= maxFramedTopics {
		w.prefixes = map[string][]byte{}
	}
	prefix := func(topic string, md protoreflect.MessageDescriptor) ([]byte, error) {
		if p, ok := w.prefixes[topic]; ok {
			return p, nil
		}
		p, err := s.cfg.Registry.Prefix(ctx, topic, md)
		if err != nil {
			return nil, err
		}
		w.prefixes[topic] = p
		return p, nil
	}
	if s.cfg.DecisionsTopic != "" && len(w.live) > 0 {
		if _, err := prefix(s.cfg.DecisionsTopic, decisionType); err != nil {
			if !errors.Is(err, schemas.ErrInvalid) {
				return err
			}
			s.log.Warn("decisions written unframed: the schema registry refused their schema", "err", err)
			w.prefixes[s.cfg.DecisionsTopic] = nil
		}
	}
	for i := range w.live {
		l := &w.live[i]
		l.prefix, l.prefixErr = nil, nil
		if l.codec != schemas.Protobuf {
			continue
		}
		p, err := prefix(w.responseTopic(l.req), responseType)
		if err != nil && !errors.Is(err, schemas.ErrInvalid) {
			return err
		}
		l.prefix, l.prefixErr = p, err
	}
	return nil
}

// version returns the model version naming the prior label.
func (w *scoreWorker) version(label string) string {
	v, ok := w.versions[label]
	if !ok {
		if w.versions == nil || len(w.versions) >= 10_000 {
			w.versions = map[string]string{}
		}
		v = w.s.cfg.ModelVersion + ";prior=" + label
		w.versions[label] = v
	}
	return v
}

// decide appends the decision of request l (record r), ranked from arms
// into items, to the batch's decisions.
func (w *scoreWorker) decide(l *liveRequest, r *record, arms []sampler.Arm, items []*schemas.RankedItem, seed uint64, received time.Time) {
	req := l.req
	w.alphas, w.betas = slices.Grow(w.alphas[:0], len(arms)), slices.Grow(w.betas[:0], len(arms))
	for i := range arms {
		w.alphas = append(w.alphas, arms[i].Alpha())
		w.betas = append(w.betas, arms[i].Beta())
	}
	w.dec = schemas.Decision{
		RequestId: req.GetRequestId(), UserId: req.GetUserId(), Context: req.GetContext(), Candidates: req.GetCandidates(),
		Alpha: w.alphas, Beta: w.betas, Items: items, K: req.GetK(), Mode: w.resp.GetMode(), Seed: seed,
		ModelVersion: w.resp.GetModelVersion(), DecidedTimeMs: received.UnixMilli(), PropensityDraws: int32(w.s.cfg.PropensityDraws),
	}
	start := len(w.values)
	w.values = append(w.values, w.prefixes[w.s.cfg.DecisionsTopic]...)
	var err error
	if w.values, err = schemas.Protobuf.AppendDecision(w.values, &w.dec); err != nil {
		// Only a value protobuf cannot encode (invalid UTF-8, which the
		// request's checks exclude) gets here.
		w.values = w.values[:start]
		w.s.decisionsDropped.Add(1)
		w.s.log.Warn("decision not encoded", "request_id", req.GetRequestId(), "err", err)
		return
	}
	w.decisions = append(w.decisions, kafka.Message{Topic: w.s.cfg.DecisionsTopic, Key: []byte(req.GetUserId()),
		Value: w.values[start:len(w.values):len(w.values)], Headers: withTrace(responseHeaders[schemas.Protobuf], r)})
}
