package ops_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// A hot tier at its maxmemory (noeviction, on a Redis of its own): ingest
// pauses, says so (metric, log, readiness) and loses nothing; the scorer
// keeps answering every request, from hot users and new ones alike; once
// memory frees, ingest resumes and the counts are exact.
func TestRedisFullPausesIngestOnly(t *testing.T) {
	d := newDaemons(t)
	d.redis = stacktest.StartRedisWith(t, "--maxmemory-policy", "noeviction")
	args := slices.Clone(d.args)
	args[slices.Index(args, "-redis-addr")+1] = d.redis
	prefix := args[slices.Index(args, "-key-prefix")+1]
	results := stacktest.CreateTopic(t, d.brokers, "it_full_results", 1)
	ingestAddr, scoreAddr := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	ingestGroup, scoreGroup := stacktest.UniqueName("it_full_ingest"), stacktest.UniqueName("it_full_score")
	ingest := stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil, append(args, "-topic", d.events, "-group", ingestGroup,
		"-ops-addr", ingestAddr, "-log-level", "info")...)
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil, append(args, "-topic", d.requests, "-results-topic", results,
		"-group", scoreGroup, "-ops-addr", scoreAddr, "-session-wait", "100ms")...)
	waitFor(t, ingestAddr, "/readyz", 200, time.Minute)
	waitFor(t, scoreAddr, "/readyz", 200, time.Minute)

	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: d.redis})
	t.Cleanup(func() { rdb.Close() })
	send := func(topic string, msgs []kafka.Message) {
		t.Helper()
		w := &kafka.Writer{Addr: kafka.TCP(d.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
		defer w.Close()
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	events := func(from, n, users int) []kafka.Message {
		var out []kafka.Message
		for i := from; i < from+n; i++ {
			ev := &schemas.Interaction{EventId: "f" + strconv.Itoa(i), UserId: "u" + strconv.Itoa(i%users), ItemId: "sku-" + strconv.Itoa(i%10),
				Context: "home", Type: schemas.Click, EventTimeMs: time.Now().UnixMilli()}
			v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
			out = append(out, kafka.Message{Key: []byte(ev.UserId), Value: v})
		}
		return out
	}
	send(d.events, events(0, 200, 20))
	stacktest.WaitForLag(t, d.brokers, ingestGroup, d.events, time.Minute)

	// Full: the limit below what is used refuses every write.
	stacktest.FillRedis(t, rdb)
	send(d.events, events(200, 200, 40)) // users u20…u39 are new
	var requests []kafka.Message
	for i := 0; i < 40; i++ {
		user := "u" + strconv.Itoa(i) // u0…u19 hot, u20…u39 not
		v, _ := schemas.Protobuf.AppendScoreRequest(nil, &schemas.ScoreRequest{RequestId: "q" + strconv.Itoa(i), UserId: user, Context: "home",
			Candidates: []string{"sku-1", "sku-2", "sku-3"}, K: 2, SentTimeMs: time.Now().UnixMilli()})
		requests = append(requests, kafka.Message{Key: []byte(user), Value: v})
	}
	send(d.requests, requests)
	waitFor(t, ingestAddr, "/readyz", 503, time.Minute)
	stacktest.WaitForLag(t, d.brokers, scoreGroup, d.requests, time.Minute)
	sc := metrics(t, scoreAddr)
	if got := sc["banditstream_requests_total"]["outcome=scored"]; got != 40 {
		t.Fatalf("scored %v of 40 requests with the hot tier full", got)
	}
	waitFor(t, scoreAddr, "/readyz", 200, 10*time.Second)
	in := metrics(t, ingestAddr)
	if full := in["banditstream_hot_tier_full"][""]; full != 1 {
		t.Fatalf("banditstream_hot_tier_full = %v with the hot tier full", full)
	}
	if lag, err := stacktest.Lag(ctx, d.brokers, ingestGroup, d.events); err != nil || lag == 0 {
		t.Fatalf("ingest lag %d (%v) with the hot tier full: it committed what it could not apply", lag, err)
	}

	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	stacktest.WaitForLag(t, d.brokers, ingestGroup, d.events, time.Minute)
	waitFor(t, ingestAddr, "/readyz", 200, 30*time.Second)
	if full := metrics(t, ingestAddr)["banditstream_hot_tier_full"][""]; full != 0 {
		t.Fatalf("banditstream_hot_tier_full = %v once memory freed", full)
	}
	h, err := hot.New(rdb, hot.Keys{Prefix: prefix, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	var arms []state.Arm
	for i := 0; i < 10; i++ {
		arms = append(arms, state.Arm{Context: "home", Item: "sku-" + strconv.Itoa(i)})
	}
	counts, err := h.Counts(ctx, arms)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range counts {
		if got := c.ByType[schemas.Click-1]; got != 40 {
			t.Errorf("%s counts %d clicks, want 40", arms[i].Item, got)
		}
	}
	for u := 0; u < 40; u++ {
		user := "u" + strconv.Itoa(u)
		own, err := h.UserArmCounts(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		var clicks int64
		for _, c := range own {
			clicks += c[schemas.Click-1]
		}
		want := int64(5) // 200 events over 40 users after the fill
		if u < 20 {
			want += 10 // and 200 over 20 before it
		}
		if clicks != want {
			t.Errorf("user %s counts %d clicks, want %d", user, clicks, want)
		}
	}
	if out := ingest.Output(); !strings.Contains(out, "hot tier full") || !strings.Contains(out, "ingest resumed") {
		t.Errorf("ingest did not log the pause and the resume:\n%.3000s", out)
	}
}
