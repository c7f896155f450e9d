package producers_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/producers"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// Examples and tests share one scorer, started in TestMain on its own
// topics and hot tier namespace, as a deployment would run it.
var env struct {
	brokers  []string
	events   string // interactions topic of the examples
	requests string // score requests topic the scorer reads
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// The examples run against the local stack, and examples cannot
		// skip: the whole package is an integration test.
		fmt.Println("producers: integration tests and examples need the local stack; not run with -short")
		os.Exit(0)
	}
	code := func() int {
		stop, err := startScorer()
		if err != nil {
			fmt.Fprintln(os.Stderr, "starting the scorer:", err)
			return 1
		}
		defer stop()
		return m.Run()
	}()
	if code == 0 {
		if err := goleak.Find(stacktest.KafkaIdleGoroutines()...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// startScorer seeds three arms and runs a scorer on fresh topics.
func startScorer() (func(), error) {
	env.brokers = strings.Split(envOr(stacktest.EnvKafka, "127.0.0.1:9092"), ",")
	redisAddr := envOr(stacktest.EnvRedis, "127.0.0.1:6379")
	run := stacktest.UniqueName("producers")
	env.events, env.requests = run+".interactions", run+".score-requests"
	client := &kafka.Client{Addr: kafka.TCP(env.brokers...), Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var topics []kafka.TopicConfig
	for _, t := range []string{env.events, env.requests, env.requests + ".dlq", run + ".score-results"} {
		topics = append(topics, kafka.TopicConfig{Topic: t, NumPartitions: 3, ReplicationFactor: -1})
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	for t, err := range resp.Errors {
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", t, err)
		}
	}
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(redisAddr, ",")})
	hot, err := hot.New(rdb, hot.Keys{Prefix: run, Shards: 4})
	if err != nil {
		return nil, err
	}
	epoch, err := hot.Recover(ctx, "")
	if err != nil {
		return nil, err
	}
	// sku-1: 30 clicks in 100 impressions; sku-2: 5 in 100; sku-3 unseen.
	a1, a2 := state.Arm{Context: "home", Item: "sku-1"}, state.Arm{Context: "home", Item: "sku-2"}
	batches := map[int]*state.ShardBatch{}
	for _, d := range []state.ArmDelta{
		{Arm: a1, Counts: state.Counts{ByType: [state.NumEventTypes]int64{100, 30}}},
		{Arm: a2, Counts: state.Counts{ByType: [state.NumEventTypes]int64{100, 5}}},
	} {
		s := hot.Keys().Shard(d.Arm)
		if batches[s] == nil {
			batches[s] = &state.ShardBatch{Shard: s, Expected: state.NoWatermark}
		}
		batches[s].Deltas = append(batches[s].Deltas, d)
	}
	var list []state.ShardBatch
	for _, b := range batches {
		list = append(list, *b)
	}
	if _, err := hot.Apply(ctx, "seed", 0, 0, epoch, list); err != nil {
		return nil, err
	}
	out := &kafka.Writer{Addr: kafka.TCP(env.brokers...), RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	sc, err := consumers.NewScorer(consumers.ScorerConfig{
		Brokers: env.brokers, Topic: env.requests, ResultsTopic: run + ".score-results", GroupID: run,
		SessionTimeout: 6 * time.Second, FetchMaxWait: 20 * time.Millisecond,
	}, hot, nil, out)
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Run(sctx) }()
	return func() {
		stop()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "scorer:", err)
		}
		out.Close()
		rdb.Close()
	}, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ExampleEventProducer() {
	p, err := producers.NewEventProducer(producers.Config{Brokers: env.brokers}, env.events)
	if err != nil {
		panic(err)
	}
	defer p.Close()
	now := time.Now().UnixMilli()
	err = p.PublishBatch(context.Background(), []*schemas.Interaction{
		{EventId: producers.NewEventID(), UserId: "u-1", ItemId: "sku-1", Context: "home", Type: schemas.Impression, EventTimeMs: now},
		{EventId: producers.NewEventID(), UserId: "u-1", ItemId: "sku-1", Context: "home", Type: schemas.Click, EventTimeMs: now},
		{EventId: producers.NewEventID(), UserId: "", ItemId: "sku-2", Type: schemas.Impression, EventTimeMs: now},
	})
	var be *producers.BatchError
	if errors.As(err, &be) {
		for _, i := range be.Failed() {
			fmt.Printf("event %d: %v\n", i, be.Errs[i])
		}
	}
	// Output: event 2: invalid user_id: missing
}

func ExampleRankClient() {
	ctx := context.Background()
	c, err := producers.NewRankClient(ctx, producers.RankConfig{
		Config: producers.Config{Brokers: env.brokers}, RequestsTopic: env.requests, Timeout: 20 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	resp, err := c.Rank(ctx, &schemas.ScoreRequest{
		UserId: "u-1", Context: "home", Candidates: []string{"sku-1", "sku-2", "sku-3"}, K: 3, Mode: schemas.ModeMean,
	})
	if err != nil {
		panic(err)
	}
	for _, it := range resp.GetItems() {
		fmt.Printf("%s %.3f\n", it.GetItemId(), it.GetMean())
	}
	// Output:
	// sku-3 0.500
	// sku-1 0.304
	// sku-2 0.059
}

// Invalid events are reported by index and not sent; the valid ones of
// the same batch are published, once each.
func TestPublishBatchReportsEachEvent(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	topic := stacktest.CreateTopic(t, brokers, "it_events", 2)
	p, err := producers.NewEventProducer(producers.Config{Brokers: brokers, Compression: "lz4", Codec: schemas.JSON}, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	now := time.Now().UnixMilli()
	var evs []*schemas.Interaction
	for i := 0; i < 50; i++ {
		ev := &schemas.Interaction{EventId: "e" + strconv.Itoa(i), UserId: "u" + strconv.Itoa(i%7), ItemId: "sku", Type: schemas.Click, EventTimeMs: now}
		switch i % 10 {
		case 3:
			ev.ItemId = ""
		case 7:
			ev.Type = 42
		}
		evs = append(evs, ev)
	}
	err = p.PublishBatch(context.Background(), evs)
	var be *producers.BatchError
	if !errors.As(err, &be) || len(be.Errs) != 50 || len(be.Failed()) != 10 {
		t.Fatalf("error %v, want a BatchError with 10 failures of 50", err)
	}
	for _, i := range be.Failed() {
		if i%10 != 3 && i%10 != 7 || !errors.Is(be.Errs[i], schemas.ErrInvalid) {
			t.Fatalf("event %d failed with %v", i, be.Errs[i])
		}
	}
	if err := p.Publish(context.Background(), evs[0]); err != nil {
		t.Fatal(err)
	}
	// 40 valid events plus the one published again: 41 records, each a
	// JSON event keyed by its user.
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for part := 0; part < 2; part++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: part, MaxWait: 100 * time.Millisecond})
		end, err := r.ReadLag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for n := int64(0); n < end; n++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ev := &schemas.Interaction{}
			if err := schemas.JSON.DecodeInteraction(schemas.DefaultLimits(), m.Value, ev); err != nil || string(m.Key) != ev.GetUserId() {
				t.Fatalf("record %q (key %q): %v", m.Value, m.Key, err)
			}
			got[ev.GetEventId()]++
		}
		r.Close()
	}
	if len(got) != 40 || got["e0"] != 2 {
		t.Fatalf("%d distinct events, e0 %d times; want 40 and 2", len(got), got["e0"])
	}
}

// Two clients with 500 requests each in flight at once: every caller gets
// the response to its own request, from its own reply topic, and none is
// lost.
func TestRankClientsCorrelateConcurrentRequests(t *testing.T) {
	stacktest.KafkaBrokers(t)
	ctx := context.Background()
	var clients []*producers.RankClient
	for i := 0; i < 2; i++ {
		c, err := producers.NewRankClient(ctx, producers.RankConfig{
			Config: producers.Config{Brokers: env.brokers}, RequestsTopic: env.requests, Timeout: time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	if clients[0].ReplyTopic() == clients[1].ReplyTopic() {
		t.Fatal("two clients share a reply topic")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%2]
			id := fmt.Sprintf("c%d-r%d", i%2, i)
			seed := uint64(i)
			resp, err := c.Rank(ctx, &schemas.ScoreRequest{RequestId: id, UserId: "u" + strconv.Itoa(i%37), Context: "home",
				Candidates: []string{"sku-1", "sku-2", "sku-3", "sku-" + strconv.Itoa(i)}, K: 2, Seed: &seed})
			switch {
			case err != nil:
				errs <- err
			case resp.GetRequestId() != id || resp.GetSeed() != seed || len(resp.GetItems()) != 2:
				errs <- fmt.Errorf("request %s got response %s (seed %d, %d items)", id, resp.GetRequestId(), resp.GetSeed(), len(resp.GetItems()))
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n < 5 {
			t.Error(err)
		}
		n++
	}
	if n > 0 {
		t.Fatalf("%d of 1000 requests failed", n)
	}
}

// A request nobody answers fails with ErrNoResponse after the timeout.
func TestRankClientTimesOut(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	topic := stacktest.CreateTopic(t, brokers, "it_unread", 1)
	c, err := producers.NewRankClient(context.Background(), producers.RankConfig{
		Config: producers.Config{Brokers: brokers}, RequestsTopic: topic, Timeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Rank(context.Background(), &schemas.ScoreRequest{UserId: "u", Candidates: []string{"a"}, K: 1})
	if !errors.Is(err, producers.ErrNoResponse) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want ErrNoResponse", err)
	}
}
