package chaos_test

import (
	"context"
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
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/hot"
)

// Poison pills under the steady load, on a Redis of the scenario's own:
// every second a round of hostile records — a request whose response is
// larger than its reply topic accepts, requests naming the events topic,
// an internal topic and a reply topic that never appears, a malformed
// event with a 2 MiB key and one with a 2 MiB header, a malformed request
// with a 2 MiB key, valid events of users whose ids hold braces — while one
// user is never idle, and for a few seconds the hot tier is full. The
// checks of the other scenarios hold; besides, every pill is dead-lettered
// once with its reason, nothing is written to a topic outside the
// allowlist, the busy user's pending events and cold state stay within
// their bounds, and every partition's lag is back to 0 within a minute of
// the load stopping.
func TestFaultChaosPoisonPills(t *testing.T) {
	s := newSystem(t, 6)
	s.redis = stacktest.StartRedisWith(t, "--maxmemory-policy", "noeviction")
	small := stacktest.UniqueName(consumers.ReplyTopicPrefix + "chaos_small")
	client := &kafka.Client{Addr: kafka.TCP(s.brokers...)}
	res, err := client.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: small, NumPartitions: 1,
		ReplicationFactor: -1, ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "1000000"}}}}})
	if err != nil || res.Errors[small] != nil {
		t.Fatalf("creating %s: %v %v", small, err, res.Errors[small])
	}
	// The busy user sends 20 events a second: the bound in number flushes
	// it every 2 s; the others (about one event a second each) by age.
	const flushPending = 40
	s.startIngest("-flush-pending", strconv.Itoa(flushPending), "-flush-after", "10s")
	s.startScorer("-reply-topic-wait", "3s")
	s.run(steady)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.sendPills(ctx, small) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	seconds := sized(20, 60)
	rdb := redis.NewClient(&redis.Options{Addr: s.redis})
	t.Cleanup(func() { rdb.Close() })
	h, tier := s.stores(t)
	var worstPending, worstAge int64
	samples := 0
	for second := 1; second <= seconds; second++ {
		time.Sleep(time.Second)
		switch second {
		case seconds / 3:
			stacktest.FillRedis(t, rdb)
		case seconds/3 + 4:
			if err := rdb.ConfigSet(context.Background(), "maxmemory", "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if second > seconds/3 && second < seconds/3+8 || second < 5 {
			continue // full, or just freed: ingest catches up; or starting
		}
		if pending, age, ok := busy(t, h, tier); ok {
			worstPending, worstAge = max(worstPending, pending), max(worstAge, age)
			samples++
		}
	}
	if samples < seconds/3 {
		t.Errorf("the never-idle user was hot in %d of %d samples", samples, seconds)
	}
	// The bounds: -flush-pending plus the events of one sweep round (a
	// round flushes every due user of the load: one to two seconds on a
	// warm stack, five and more on a fresh one, whose Cassandra is still
	// compiling; 8 s allowed, 160 events), and -flush-after. Unflushed,
	// the user would reach 20 events a second for the whole run (400 and
	// more), and a cold state as old as the run.
	if bound := int64(flushPending + 8*20); worstPending > bound || worstAge > 10_000 {
		t.Errorf("the never-idle user had up to %d events pending (bound %d) and a cold state up to %d ms old (bound 10,000)", worstPending, bound, worstAge)
	}
	stop()
	wg.Wait()
	s.stopLoad()
	s.loadDone.Wait()
	t0 := time.Now()
	stacktest.WaitForLag(t, s.brokers, s.ingestGroup, s.events, time.Minute)
	stacktest.WaitForLag(t, s.brokers, s.scoreGroup, s.requests, time.Minute)
	caughtUp := time.Since(t0)

	s.checkPillReasons(t)
	s.settle("poison pills", fmt.Sprintf("%d rounds of pills, hot tier full 4 s, busy user ≤ %d pending, cold ≤ %d ms old; lag 0 %s after the load",
		s.pillsSent["oversize"], worstPending, worstAge, caughtUp.Round(100*time.Millisecond)))
}

const busyUser = "u-busy"

// busy returns the never-idle user's events not yet in the cold tier and
// the age of its cold state (ms); ok is false when it is not hot or has no
// cold state yet.
func busy(t *testing.T, h *hot.Hot, tier *store.Tier) (pending, ageMs int64, ok bool) {
	ctx := context.Background()
	sess, hot, err := h.ReadSession(ctx, busyUser)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tier.ColdState(ctx, busyUser)
	if !hot || err != nil {
		return 0, 0, false
	}
	return sess.PendingEnd - sess.PendingStart, time.Now().UnixMilli() - st.FlushedMs, true
}

// A pill's key names its kind after poisonKey, and its dead letter's
// reason must hold want.
var pillReasons = map[string]string{
	"oversize":  "larger than topic",
	"events":    "invalid reply_topic",
	"internal":  "invalid reply_topic",
	"missing":   "Unknown Topic Or Partition",
	"bigkey":    "",
	"bigheader": "",
	"badreq":    "",
}

func pillKey(kind string) []byte { return []byte(poisonKey + ":" + kind) }

// sendPills sends a round of pills every second, and an event of the
// never-idle user every 50 ms.
func (s *system) sendPills(ctx context.Context, small string) {
	events, requests := newWriter(s.brokers, s.events), newWriter(s.brokers, s.requests)
	defer events.Close()
	defer requests.Close()
	missing := stacktest.UniqueName(consumers.ReplyTopicPrefix + "chaos_never")
	big := strings.Repeat("k", 2<<20)
	huge := make([]string, 10_000)
	for i := range huge {
		huge[i] = fmt.Sprintf("sku-%091d", i) // 95 bytes: a 1 MB request, a larger response
	}
	request := func(kind string, r *schemas.ScoreRequest) kafka.Message {
		v, _ := schemas.Protobuf.AppendScoreRequest(nil, r)
		return kafka.Message{Key: pillKey(kind), Value: v}
	}
	bad := []byte{0xff, 0xff, 0x01}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		id := "pill" + strconv.Itoa(n)
		ev := &schemas.Interaction{EventId: "busy" + strconv.Itoa(n), UserId: busyUser, ItemId: "sku-" + strconv.Itoa(n%items), Context: "home",
			Type: schemas.Impression, EventTimeMs: time.Now().UnixMilli()}
		v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
		evs := []kafka.Message{{Key: []byte(busyUser), Value: v}}
		ids := []string{ev.EventId}
		var reqs, bigs, bigReq []kafka.Message
		if n%20 == 0 {
			for i, u := range []string{"}x", "a}b{", "{u-" + strconv.Itoa(n) + "}"} {
				ev := &schemas.Interaction{EventId: id + "-brace" + strconv.Itoa(i), UserId: u, ItemId: "sku-1", Context: "home",
					Type: schemas.Click, EventTimeMs: time.Now().UnixMilli()}
				v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
				evs = append(evs, kafka.Message{Key: []byte(u), Value: v})
				ids = append(ids, ev.EventId)
			}
			bigs = []kafka.Message{
				{Key: append(pillKey("bigkey"), big...), Value: bad},
				{Key: pillKey("bigheader"), Value: bad, Headers: []kafka.Header{{Key: "x-big", Value: []byte(big)}}},
			}
			reqs = []kafka.Message{
				request("oversize", &schemas.ScoreRequest{RequestId: id + "-oversize", UserId: "u-1", Candidates: huge, K: 10_000, ReplyTopic: small}),
				request("events", &schemas.ScoreRequest{RequestId: id + "-events", UserId: "u-1", Candidates: []string{"sku-1"}, K: 1, ReplyTopic: s.events}),
				request("internal", &schemas.ScoreRequest{RequestId: id + "-internal", UserId: "u-1", Candidates: []string{"sku-1"}, K: 1, ReplyTopic: "__consumer_offsets"}),
				request("missing", &schemas.ScoreRequest{RequestId: id + "-missing", UserId: "u-1", Candidates: []string{"sku-1"}, K: 1, ReplyTopic: missing}),
			}
			bigReq = []kafka.Message{{Key: append(pillKey("badreq"), big...), Value: bad}}
		}
		// Each 2 MiB record alone: together they would pass the broker's
		// limit for one batch. Each write counts once acknowledged, so a
		// round cut short by the load's end counts what it sent.
		if !publish(ctx, events, evs) {
			return
		}
		s.acked(evs, ids, 0, nil)
		if len(reqs) > 0 && !publish(ctx, requests, reqs) {
			return
		}
		s.acked(nil, nil, 0, reqs)
		for _, m := range bigs {
			if !publish(ctx, events, []kafka.Message{m}) {
				return
			}
			s.acked([]kafka.Message{m}, nil, 1, nil)
		}
		for _, m := range bigReq {
			if !publish(ctx, requests, []kafka.Message{m}) {
				return
			}
			s.acked(nil, nil, 0, []kafka.Message{m})
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// acked counts what the pills' writer has had acknowledged: events (poison
// of them malformed), the ids of the valid ones, and bad requests by pill.
func (s *system) acked(evs []kafka.Message, ids []string, poison int, reqs []kafka.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventsSent += len(evs)
	s.poisonSent += poison
	for _, id := range ids {
		s.eventIDs[id] = true
	}
	s.badRequests += len(reqs)
	for _, m := range reqs {
		s.pillsSent[pillKind(m.Key)]++
	}
}

// checkPillReasons reads the requests' dead-letter topic: every pill there
// once, with its reason.
func (s *system) checkPillReasons(t *testing.T) {
	byKind := map[string]int{}
	err := readTopic(context.Background(), s.brokers, s.requests+".dlq", func(m kafka.Message) error {
		kind := pillKind(m.Key)
		if kind == "" {
			return nil
		}
		want, ok := pillReasons[kind]
		if !ok {
			return fmt.Errorf("a dead letter of an unknown pill %q", kind)
		}
		if reason := header(m, consumers.HeaderError); !strings.Contains(reason, want) {
			t.Errorf("pill %s dead-lettered with reason %q, want %q in it", kind, reason, want)
		}
		byKind[kind]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kind := range []string{"oversize", "events", "internal", "missing", "badreq"} {
		if sent := s.pillsSent[kind]; sent == 0 || byKind[kind] != sent {
			t.Errorf("%d dead letters of pill %s, want one per acknowledged pill (%d)", byKind[kind], kind, sent)
		}
	}
}

// pillKind is the kind of pill a record's key names, "" for a record that
// is not a pill.
func pillKind(key []byte) string {
	k := string(key)
	if !strings.HasPrefix(k, poisonKey+":") {
		return ""
	}
	kind := strings.TrimPrefix(k, poisonKey+":")
	if strings.HasPrefix(kind, "badreq") {
		kind = "badreq" // its key was cut
	}
	return kind
}
