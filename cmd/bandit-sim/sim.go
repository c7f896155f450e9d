package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/schemas"
)

// simConfig configures a simulation run.
type simConfig struct {
	rate            float64       // score requests per second
	duration        time.Duration // how long requests are sent
	users           int
	sessionRequests int           // mean requests per session
	idle            time.Duration // pause between a user's sessions
	badEvery        int           // every n-th event is malformed (0: none)
	seed            uint64
	runID           int64 // makes request and event ids unique across runs
	requestsTopic   string
	eventsTopic     string
	replyTopic      string
	live            io.Writer // the updating status line; nil: none
	// scenario changes the world during the run: steady (never), drift
	// (each context's best item falls and another rises half-way through)
	// or new-items (an item joins the catalogue every newEvery).
	scenario string
	newEvery time.Duration
	// newFirst is how many impressions of a new item count as its start.
	newFirst int
}

// The scenarios.
const (
	scenarioSteady   = "steady"
	scenarioDrift    = "drift"
	scenarioNewItems = "new-items"
)

// writer writes messages synchronously with acks=all.
type writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// observer reports what the pipeline's state looks like: which users are
// hot, and how many records the dead-letter topics hold.
type observer interface {
	hot(ctx context.Context, users []string) ([]bool, error)
	deadLetters(ctx context.Context) (int64, error)
}

// point is one second of the run.
type point struct {
	t                     float64 // seconds since start
	requests, answered    int
	impressions, clicks   int
	expectedClicks        float64 // of the items the pipeline ranked
	uniformClicks         float64 // of k items at random, same requests
	oracleClicks          float64 // of the k best items, same requests
	regret, uniformRegret float64 // cumulative expected regret
	bestTop1, top1        int     // responses ranking the context's best item first
	// newRegret is the cumulative expected regret of the slots new items
	// took in their first impressions: per slot, the oracle's mean rate
	// less the new item's; newShown counts those slots.
	newRegret            float64
	newShown             int
	hotUsers             int
	offloads, reloads    int // cumulative
	deadLetters, badSent int64
	eventsSent           int
}

type pending struct {
	user, context string
	sent          time.Time
}

type userState struct {
	left      int       // requests left in the session
	idleUntil time.Time // not before this
	wasHot    bool
	offloaded bool
}

// sim runs users against the real pipeline: it sends score requests, reads
// the rankings from its reply topic, and turns each ranking into
// impressions, clicks and orders drawn from the world's hidden rates.
type sim struct {
	cfg      simConfig
	w        *world
	requests writer
	events   writer
	replies  <-chan *schemas.ScoreResponse
	obs      observer
	r        *rand.Rand

	users   []string
	state   []userState
	pending map[string]pending
	series  []point
	cur     point
	nReq    int
	nEvent  int
	// shown counts each item's impressions per context (scenario
	// new-items); switched and nextItem pace the scenarios.
	shown    map[string][]int
	switched bool
	nextItem time.Duration
}

func newSim(cfg simConfig, w *world, requests, events writer, replies <-chan *schemas.ScoreResponse, obs observer) *sim {
	s := &sim{cfg: cfg, w: w, requests: requests, events: events, replies: replies, obs: obs,
		r: rand.New(rand.NewPCG(cfg.seed, cfg.seed+1)), pending: map[string]pending{}, shown: map[string][]int{}, nextItem: cfg.newEvery}
	for i := 0; i < cfg.users; i++ {
		s.users = append(s.users, "sim-"+strconv.FormatInt(cfg.runID, 36)+"-u"+strconv.Itoa(i))
		s.state = append(s.state, userState{left: 1 + s.r.IntN(2*cfg.sessionRequests)})
	}
	return s
}

// run sends requests for the configured duration, then waits up to 15 s
// for the outstanding rankings, and returns the per-second series.
func (s *sim) run(ctx context.Context) ([]point, error) {
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	nextSecond := start.Add(time.Second)
	var reqs, evs []kafka.Message
	for {
		now := time.Now()
		sending := now.Sub(start) < s.cfg.duration
		if !sending && (len(s.pending) == 0 || now.Sub(start) > s.cfg.duration+15*time.Second) {
			break
		}
		if sending {
			s.change(now.Sub(start))
			due := int(s.cfg.rate * now.Sub(start).Seconds())
			for s.nReq < due {
				m, ok := s.request(now)
				if !ok {
					break // every user is between sessions
				}
				reqs = append(reqs, m)
			}
		}
	drain:
		for {
			select {
			case resp := <-s.replies:
				evs = s.answer(resp, evs)
			default:
				break drain
			}
		}
		if len(reqs) > 0 {
			if err := s.requests.WriteMessages(ctx, reqs...); err != nil {
				return s.series, fmt.Errorf("sending score requests: %w", err)
			}
			reqs = reqs[:0]
		}
		if len(evs) > 0 {
			if err := s.events.WriteMessages(ctx, evs...); err != nil {
				return s.series, fmt.Errorf("sending events: %w", err)
			}
			evs = evs[:0]
		}
		if now.After(nextSecond) {
			if err := s.second(ctx, now.Sub(start)); err != nil {
				return s.series, err
			}
			nextSecond = nextSecond.Add(time.Second)
		}
		select {
		case <-ctx.Done():
			return s.series, ctx.Err()
		case <-tick.C:
		}
	}
	if err := s.second(ctx, time.Since(start)); err != nil {
		return s.series, err
	}
	if n := len(s.pending); n > 0 {
		return s.series, fmt.Errorf("%d score requests unanswered 15 s after the last", n)
	}
	return s.series, nil
}

// change applies the scenario at elapsed into the run.
func (s *sim) change(elapsed time.Duration) {
	switch s.cfg.scenario {
	case scenarioDrift:
		if !s.switched && elapsed >= s.cfg.duration/2 {
			s.w.switchBest()
			s.switched = true
		}
	case scenarioNewItems:
		for s.cfg.newEvery > 0 && elapsed >= s.nextItem {
			s.w.addItem()
			s.nextItem += s.cfg.newEvery
		}
	}
}

// request makes the next score request, from a user in a session.
func (s *sim) request(now time.Time) (kafka.Message, bool) {
	for range 8 {
		i := s.r.IntN(len(s.users))
		st := &s.state[i]
		if now.Before(st.idleUntil) {
			continue
		}
		st.left--
		if st.left <= 0 {
			st.left = 1 + s.r.IntN(2*s.cfg.sessionRequests)
			st.idleUntil = now.Add(s.cfg.idle)
		}
		s.nReq++
		ctxName := s.w.contexts[s.r.IntN(len(s.w.contexts))]
		req := &schemas.ScoreRequest{
			RequestId: "sim-" + strconv.FormatInt(s.cfg.runID, 36) + "-" + strconv.Itoa(s.nReq),
			UserId:    s.users[i], Context: ctxName, Candidates: s.w.items, K: int32(s.w.k),
			ReplyTopic: s.cfg.replyTopic, SentTimeMs: now.UnixMilli(),
			DeadlineMs: now.Add(30 * time.Second).UnixMilli(),
		}
		v, _ := schemas.Protobuf.AppendScoreRequest(nil, req)
		s.pending[req.RequestId] = pending{user: req.UserId, context: ctxName, sent: now}
		s.cur.requests++
		return kafka.Message{Topic: s.cfg.requestsTopic, Key: []byte(req.UserId), Value: v}, true
	}
	return kafka.Message{}, false
}

// answer scores a ranking against the hidden rates and appends the events
// the user produces on it.
func (s *sim) answer(resp *schemas.ScoreResponse, evs []kafka.Message) []kafka.Message {
	p, ok := s.pending[resp.GetRequestId()]
	if !ok {
		return evs // a duplicate, or another run's
	}
	delete(s.pending, resp.GetRequestId())
	s.cur.answered++
	var shown []int
	for _, it := range resp.GetItems() {
		if i, err := s.w.itemIndex(it.GetItemId()); err == nil {
			shown = append(shown, i)
		}
	}
	c := p.context
	exp := s.w.expected(c, shown)
	s.cur.expectedClicks += exp
	s.cur.uniformClicks += s.w.uniform[c]
	s.cur.oracleClicks += s.w.oracle[c]
	s.cur.regret += s.w.oracle[c] - exp
	s.cur.uniformRegret += s.w.oracle[c] - s.w.uniform[c]
	if len(shown) > 0 {
		s.cur.top1++
		if shown[0] == s.w.best[c] {
			s.cur.bestTop1++
		}
	}
	// The events are stamped with the time the scorer received the
	// request: the decision's time, so that an evaluation of the decision
	// log attributes them to it, not to a later request of the same user.
	now := resp.GetTiming().GetReceivedTimeMs()
	if now == 0 {
		now = time.Now().UnixMilli()
	}
	counts := s.shown[c]
	for len(counts) < len(s.w.items) {
		counts = append(counts, 0)
	}
	s.shown[c] = counts
	for _, i := range shown {
		counts[i]++
		if i >= s.w.initial && counts[i] <= s.cfg.newFirst {
			s.cur.newShown++
			s.cur.newRegret += s.w.oracle[c]/float64(s.w.k) - s.w.ctr[c][i]
		}
		evs = s.event(evs, p.user, c, i, schemas.Impression, now)
		s.cur.impressions++
		if s.r.Float64() < s.w.ctr[c][i] {
			evs = s.event(evs, p.user, c, i, schemas.Click, now)
			s.cur.clicks++
			if s.r.Float64() < s.w.orderRate {
				evs = s.event(evs, p.user, c, i, schemas.Order, now)
			}
		}
	}
	return evs
}

func (s *sim) event(evs []kafka.Message, user, ctxName string, item int, t schemas.EventType, now int64) []kafka.Message {
	s.nEvent++
	ev := &schemas.Interaction{
		EventId: "sim-" + strconv.FormatInt(s.cfg.runID, 36) + "-e" + strconv.Itoa(s.nEvent),
		UserId:  user, ItemId: s.w.items[item], Context: ctxName, Type: t, EventTimeMs: now,
	}
	if s.cfg.badEvery > 0 && s.nEvent%s.cfg.badEvery == 0 {
		// Malformed on purpose: ingest sends it to the dead-letter topic.
		bad := &schemas.Interaction{EventId: ev.EventId, ItemId: ev.ItemId, Type: t, EventTimeMs: now}
		v, _ := schemas.Protobuf.AppendInteraction(nil, bad)
		evs = append(evs, kafka.Message{Topic: s.cfg.eventsTopic, Key: []byte(user), Value: v})
		s.cur.badSent++
	}
	v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
	s.cur.eventsSent++
	return append(evs, kafka.Message{Topic: s.cfg.eventsTopic, Key: []byte(user), Value: v})
}

// second closes the current second: it samples the pipeline's state,
// prints the live line and starts the next point.
func (s *sim) second(ctx context.Context, elapsed time.Duration) error {
	hot, err := s.obs.hot(ctx, s.users)
	if err != nil {
		return fmt.Errorf("reading sessions: %w", err)
	}
	s.cur.hotUsers = 0
	for i, h := range hot {
		st := &s.state[i]
		switch {
		case h:
			s.cur.hotUsers++
			if st.offloaded {
				s.cur.reloads++
				st.offloaded = false
			}
		case st.wasHot:
			s.cur.offloads++
			st.offloaded = true
		}
		st.wasHot = h
	}
	if s.cur.deadLetters, err = s.obs.deadLetters(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("reading the dead-letter topics: %w", err)
	}
	s.cur.t = elapsed.Seconds()
	s.series = append(s.series, s.cur)
	if s.cfg.live != nil {
		fmt.Fprintf(s.cfg.live, "\r%s", liveLine(s.series))
	}
	// The next point carries the running totals.
	next := point{regret: s.cur.regret, uniformRegret: s.cur.uniformRegret,
		offloads: s.cur.offloads, reloads: s.cur.reloads, badSent: s.cur.badSent,
		newRegret: s.cur.newRegret, newShown: s.cur.newShown}
	s.cur = next
	return nil
}

// liveLine is the status line: the last second's rates and the totals.
func liveLine(series []point) string {
	last := series[len(series)-1]
	t := totals(series)
	ctr := 0.0
	if t.impressions > 0 {
		ctr = 100 * float64(t.clicks) / float64(t.impressions)
	}
	return fmt.Sprintf("%4.0fs  req/s %4d  events/s %5d  CTR %5.2f%%  regret %7.1f (random %7.1f)  hot users %4d  offloads %4d  reloads %4d  DLQ %3d ",
		last.t, last.answered, last.eventsSent, ctr, last.regret, last.uniformRegret, last.hotUsers, last.offloads, last.reloads, last.deadLetters)
}

// total sums the per-second counts of a series.
type total struct {
	requests, answered, impressions, clicks, events int
	expected, uniform, oracle                       float64
}

func totals(series []point) total {
	var t total
	for _, p := range series {
		t.requests += p.requests
		t.answered += p.answered
		t.impressions += p.impressions
		t.clicks += p.clicks
		t.events += p.eventsSent
		t.expected += p.expectedClicks
		t.uniform += p.uniformClicks
		t.oracle += p.oracleClicks
	}
	return t
}

// bestShare is the share of rankings with the context's best item first
// over series[from:to].
func bestShare(series []point, from, to int) float64 {
	var best, all int
	for _, p := range series[from:to] {
		best += p.bestTop1
		all += p.top1
	}
	if all == 0 {
		return 0
	}
	return float64(best) / float64(all)
}
