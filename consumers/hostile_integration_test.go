package consumers_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
)

// hostileUsers are ids that break a naive hash tag: on a Redis Cluster a
// user's keys must still share one slot (the cluster pass of make test
// runs these tests on one).
var hostileUsers = []string{"}x", "a}b{", "{u-1}", "{", "}", "{}", "}{", "{{}}", "a{b}c", "ü{ñ}", "x:m"}

// Users with hostile ids flow through ingest (session start, events,
// offload when idle, reload when back) with exact counts and histories.
func TestIngestHostileUserIDs(t *testing.T) {
	e := newIngestEnv(t, 3)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	stacktest.StartProcess(t, bin, nil, append(e.args(e.group), "-idle-timeout", "1s", "-sweep-interval", "200ms")...)
	w := newWriter(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	want, wantUsers := oracle{}, userOracle{}
	n := 0
	round := func() {
		var msgs []kafka.Message
		for _, u := range hostileUsers {
			for i := range 20 {
				n++
				ev := &schemas.Interaction{EventId: "h-" + strconv.Itoa(n), UserId: u, ItemId: "sku-" + strconv.Itoa(i%7),
					Context: contexts[n%len(contexts)], Type: []schemas.EventType{schemas.Impression, schemas.Click, schemas.Order}[i%3],
					EventTimeMs: time.Now().UnixMilli() - 60_000 + int64(n)}
				want.add(ev)
				wantUsers.add(ev)
				msgs = append(msgs, encode(t, ev, n))
			}
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("producing: %.300v", err)
		}
		stacktest.WaitForLag(t, e.brokers, e.group, e.topic, time.Minute)
	}
	round()
	// Idle: every session is offloaded to the cold tier.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		loaded, err := e.hot.SessionsLoaded(ctx, hostileUsers)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(loaded, true) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still hot after 30 s idle: %v", loaded)
		}
	}
	round() // back: reloaded, then counted on
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)
	if end := endOffset(ctx, t, e.brokers, e.topic+".dlq", 0); end != 0 {
		t.Fatalf("%d dead letters; want none", end)
	}
}

// Score requests of users with hostile ids are answered, none
// dead-lettered: the session touch and the user's own counts are read in
// the user's one slot.
func TestScoreHostileUserIDs(t *testing.T) {
	e := newScoreEnv(t, 2)
	e.seedArms(t, catalogue("home", 20))
	e.startScorer(t, consumers.ScorerConfig{})
	var candidates []string
	for i := range 20 {
		candidates = append(candidates, "sku-"+strconv.Itoa(i))
	}
	var msgs []kafka.Message
	for i, u := range hostileUsers {
		msgs = append(msgs, requestMsg(t, &schemas.ScoreRequest{RequestId: "h" + strconv.Itoa(i), UserId: u, Context: "home", Candidates: candidates, K: 5}))
	}
	e.send(t, msgs...)
	got := readTopic(t, e.brokers, e.results, 2, time.Minute, atLeast(len(hostileUsers)))
	for i, u := range hostileUsers {
		rs := got["h"+strconv.Itoa(i)]
		if len(rs) == 0 || len(rs[0].GetItems()) != 5 {
			t.Fatalf("user %q: responses %v, want 5 ranked items", u, rs)
		}
	}
	if end := endOffset(context.Background(), t, e.brokers, e.requests+schemas.DeadLetterSuffix, 0); end != 0 {
		t.Fatalf("%d requests dead-lettered; want none", end)
	}
}
