package consumers_test

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"slices"
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
	"github.com/banditstream/banditstream/store/state"
)

// oracle is what the arm counts must be after the events sent.
type oracle map[state.Arm]state.Counts

func (o oracle) add(ev *schemas.Interaction) { stacktest.AddArmEvent(o, ev) }

// userOracle is what each user's own state must be: counts per arm and the
// ids of the user's events.
type userOracle map[string]*stacktest.UserTruth

func (o userOracle) add(ev *schemas.Interaction) { stacktest.AddUserEvent(o, ev) }

// eventGen makes events over a small catalogue so arms repeat.
type eventGen struct {
	seed  uint64
	r     *rand.Rand
	n     int
	users int
	items int
	start int64
}

func newEventGen(seed uint64, users, items int) *eventGen {
	return &eventGen{seed: seed, r: rand.New(rand.NewPCG(seed, seed+1)), users: users, items: items,
		start: time.Now().Add(-time.Hour).UnixMilli() + int64(seed)*1_000_000}
}

var contexts = []string{"home", "search", "cart", ""}

func (g *eventGen) next() *schemas.Interaction {
	g.n++
	types := []schemas.EventType{schemas.Impression, schemas.Impression, schemas.Impression, schemas.Click, schemas.Wishlist, schemas.AddToCart, schemas.Order}
	return &schemas.Interaction{
		EventId:     "e" + strconv.FormatUint(g.seed, 10) + "-" + strconv.Itoa(g.n),
		UserId:      "u-" + strconv.Itoa(g.r.IntN(g.users)),
		ItemId:      "sku-" + strconv.Itoa(g.r.IntN(g.items)),
		Context:     contexts[g.r.IntN(len(contexts))],
		Type:        types[g.r.IntN(len(types))],
		EventTimeMs: g.start + int64(g.n),
	}
}

// encode encodes an event, every tenth as JSON with its header.
func encode(t testing.TB, ev *schemas.Interaction, i int) kafka.Message {
	codec := schemas.Protobuf
	if i%10 == 0 {
		codec = schemas.JSON
	}
	b, err := codec.AppendInteraction(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := kafka.Message{Key: []byte(ev.GetUserId()), Value: b}
	if codec == schemas.JSON {
		msg.Headers = []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(schemas.ContentTypeJSON)}}
	}
	return msg
}

// feed produces n events from gen, recording them in the oracles.
func feed(ctx context.Context, t *testing.T, w *kafka.Writer, gen *eventGen, want oracle, users userOracle, n int) {
	t.Helper()
	msgs := make([]kafka.Message, 0, n)
	for i := 0; i < n; i++ {
		ev := gen.next()
		want.add(ev)
		users.add(ev)
		msgs = append(msgs, encode(t, ev, i))
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("producing: %.300v", err)
	}
}

func newWriter(brokers []string, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Hash{}, BatchSize: 2000, BatchBytes: 4 << 20, BatchTimeout: 5 * time.Millisecond,
	}
}

type ingestEnv struct {
	brokers  []string
	redis    string
	cql      string
	keyspace string
	topic    string
	prefix   string
	group    string
	hot      *hot.Hot
	rdb      redis.UniversalClient
}

func newIngestEnv(t *testing.T, partitions int) *ingestEnv {
	t.Helper()
	e := &ingestEnv{brokers: stacktest.KafkaBrokers(t), redis: stacktest.RedisAddr(t), cql: stacktest.CQLHosts(t)[0]}
	e.keyspace = stacktest.UniqueName("it")
	e.topic = stacktest.CreateTopic(t, e.brokers, "it_ingest", partitions)
	stacktest.CreateTopicNamed(t, e.brokers, e.topic+".dlq", 1)
	e.prefix = stacktest.UniqueName("it")
	e.group = stacktest.UniqueName("it_ingest")
	e.rdb = stacktest.NewRedis(t, e.redis)
	var err error
	e.hot, err = hot.New(e.rdb, hot.Keys{Prefix: e.prefix, Shards: 64})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *ingestEnv) args(group string) []string {
	return []string{
		"-kafka-brokers", strings.Join(e.brokers, ","), "-redis-addr", e.redis, "-topic", e.topic, "-group", group,
		"-key-prefix", e.prefix, "-shards", "64", "-session-timeout", "6s", "-fetch-max-wait", "100ms",
		"-cql-hosts", e.cql, "-cql-keyspace", e.keyspace, "-cql-migrate", "-log-level", "warn",
	}
}

// killArgs widen the window between a batch's write and its commit, so that
// kills land in it.
func (e *ingestEnv) killArgs() []string {
	return append(e.args(e.group), "-fault-commit-delay", "150ms", "-fetch-max-bytes", "65536")
}

// checkCounts compares every arm of the oracle with the hot tier.
func (e *ingestEnv) checkCounts(t *testing.T, want oracle) {
	t.Helper()
	d, err := stacktest.CompareArms(context.Background(), e.hot, want)
	if err != nil {
		t.Fatal(err)
	}
	if d.WrongArms > 0 {
		t.Fatalf("%d of %d arms wrong: %d events lost, %d counted twice; %v", d.WrongArms, len(want), d.Lost, d.Twice, d.Wrong)
	}
}

// tier opens the tiered user state the ingest processes write.
func (e *ingestEnv) tier(t *testing.T) *store.Tier {
	t.Helper()
	cold, _ := stacktest.OpenCold(t, e.keyspace, e.prefix, false)
	tier, err := store.NewTier(e.hot, cold, store.TierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return tier
}

// checkUsers compares every user's state with the oracle: own counts per
// arm, and the recent history holding each event exactly once.
func (e *ingestEnv) checkUsers(t *testing.T, want userOracle) {
	t.Helper()
	bad, wrong, err := stacktest.CompareUsers(context.Background(), e.tier(t), e.hot, want, 200)
	if err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Fatalf("%d of %d users wrong: %v", bad, len(want), wrong)
	}
}

// Two ingest processes, killed with SIGKILL at random and restarted while
// events flow: every arm's counts equal the oracle, nothing lost, nothing
// twice. Then a fresh group (the same as resetting the group to the
// earliest offset) consumes everything again and changes nothing.
func TestIngestExactlyOnceUnderKills(t *testing.T) {
	const total = 200_000
	e := newIngestEnv(t, 6)
	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	procs := []*stacktest.Process{
		stacktest.StartProcess(t, bin, nil, e.killArgs()...),
		stacktest.StartProcess(t, bin, nil, e.killArgs()...),
	}

	want := oracle{}
	wantUsers := userOracle{}
	gen := newEventGen(1, 5000, 2000)
	w := newWriter(e.brokers, e.topic)
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	produced := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		const chunk = 5000
		for sent := 0; sent < total; sent += chunk {
			msgs := make([]kafka.Message, 0, chunk)
			for i := sent; i < min(sent+chunk, total); i++ {
				ev := gen.next()
				want.add(ev)
				wantUsers.add(ev)
				msgs = append(msgs, encode(t, ev, i))
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				produced <- err
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
		produced <- nil
	}()

	r := rand.New(rand.NewPCG(9, 9))
	kills := 0
	for kills < 12 {
		time.Sleep(time.Duration(300+r.IntN(900)) * time.Millisecond)
		p := procs[r.IntN(len(procs))]
		p.Kill()
		kills++
		p.Start()
	}
	wg.Wait()
	if err := <-produced; err != nil {
		t.Fatalf("producing: %.500v", err)
	}
	t.Logf("%d events sent, %d kills", total, kills)
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, 5*time.Minute)
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)

	// Everything again, from the earliest offset.
	for _, p := range procs {
		p.Kill()
	}
	again := stacktest.UniqueName("it_again")
	p := stacktest.StartProcess(t, bin, nil, e.args(again)...)
	stacktest.WaitForLag(t, e.brokers, again, e.topic, 5*time.Minute)
	p.Kill()
	e.checkCounts(t, want)
	e.checkUsers(t, wantUsers)
}

// One record in a hundred is bad, each in a different way: every bad one
// lands in the dead-letter topic with its reason and origin, the good ones
// are counted exactly, and the group's lag returns to 0.
func TestIngestDeadLetters(t *testing.T) {
	e := newIngestEnv(t, 3)
	total := 20_000
	gen := newEventGen(2, 500, 300)
	want := oracle{}
	now := time.Now()
	bad := []struct {
		reason string
		make   func(i int) kafka.Message
	}{
		{"malformed protobuf", func(i int) kafka.Message { return kafka.Message{Key: []byte("u"), Value: []byte{0x0a, 0xff, 0x01}} }},
		{"invalid user_id", func(i int) kafka.Message {
			ev := gen.next()
			ev.UserId = ""
			return encode(t, ev, 1)
		}},
		{"invalid value", func(i int) kafka.Message {
			ev := gen.next()
			ev.Value = -2
			return encode(t, ev, 1)
		}},
		{"invalid value", func(i int) kafka.Message {
			ev := gen.next()
			ev.Value = nan()
			return encode(t, ev, 1)
		}},
		{"invalid type", func(i int) kafka.Message {
			ev := gen.next()
			ev.Type = 77
			return encode(t, ev, 1)
		}},
		{"invalid type", func(i int) kafka.Message {
			return kafka.Message{Key: []byte("u"), Value: []byte(`{"event_id":"x","user_id":"u","item_id":"i","type":"purchase","event_time_ms":1}`),
				Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(schemas.ContentTypeJSON)}}}
		}},
		{"invalid message", func(i int) kafka.Message {
			return kafka.Message{Key: []byte("u"), Value: make([]byte, 1<<20+1)}
		}},
		{"invalid event_time_ms", func(i int) kafka.Message {
			ev := gen.next()
			ev.EventTimeMs = now.Add(72 * time.Hour).UnixMilli()
			return encode(t, ev, 1)
		}},
		{"invalid content-type header", func(i int) kafka.Message {
			return kafka.Message{Key: []byte("u"), Value: []byte("x"), Headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte("text/csv")}}}
		}},
		// A 1.5 MiB key and a 256 KiB header, incompressible: too large as
		// they are for the dead-letter writer, so the dead letter must
		// carry them cut.
		{"malformed protobuf", func(i int) kafka.Message {
			key, blob := make([]byte, 3<<19), make([]byte, 256<<10)
			_, _ = crand.Read(key)
			_, _ = crand.Read(blob)
			return kafka.Message{Key: key, Value: []byte{0x0a, 0xff, 0x01}, Headers: []kafka.Header{{Key: "blob", Value: blob}}}
		}},
	}
	msgs := make([]kafka.Message, 0, total)
	wantReasons := map[string]int{}
	nBad, wantBigKeys := 0, 0
	for i := 0; i < total; i++ {
		if i%100 == 50 {
			b := bad[nBad%len(bad)]
			nBad++
			m := b.make(i)
			if len(m.Key) > 1<<20 {
				wantBigKeys++
			}
			m.Headers = append(m.Headers, kafka.Header{Key: "test-seq", Value: []byte(strconv.Itoa(i))})
			msgs = append(msgs, m)
			wantReasons[b.reason]++
			continue
		}
		ev := gen.next()
		want.add(ev)
		msgs = append(msgs, encode(t, ev, i))
	}
	w := newWriter(e.brokers, e.topic)
	w.BatchBytes = 3 << 20
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("producing: %.500v", err)
	}

	bin := stacktest.BuildBinary(t, "./cmd/bandit-ingest")
	p := stacktest.StartProcess(t, bin, nil, e.args(e.group)...)
	stacktest.WaitForLag(t, e.brokers, e.group, e.topic, 3*time.Minute)
	p.Kill()
	e.checkCounts(t, want)

	// Read the dead-letter topic back.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic + ".dlq", Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	gotReasons := map[string]int{}
	seen := map[string]bool{}
	bigKeys := 0
	for len(seen) < nBad {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading the dead-letter topic after %d of %d: %v", len(seen), nBad, err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h[consumers.HeaderOriginTopic] != e.topic || h[consumers.HeaderOriginPartition] == "" || h[consumers.HeaderOriginOffset] == "" {
			t.Fatalf("dead letter without its origin: %v", h)
		}
		seen[h["test-seq"]] = true
		if len(m.Key) > 1<<20 {
			t.Fatalf("dead letter with a key of %d bytes", len(m.Key))
		}
		if h[consumers.HeaderKeyTruncated] != "" {
			bigKeys++
		}
		for _, reason := range []string{"malformed protobuf", "invalid user_id", "invalid value", "invalid type", "invalid message", "invalid event_time_ms", "invalid content-type header"} {
			if len(h[consumers.HeaderError]) >= len(reason) && h[consumers.HeaderError][:len(reason)] == reason ||
				(reason == "malformed protobuf" && contains(h[consumers.HeaderError], reason)) {
				gotReasons[reason]++
				break
			}
		}
	}
	keys := func(m map[string]int) []string {
		var out []string
		for k, v := range m {
			out = append(out, fmt.Sprintf("%s=%d", k, v))
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(keys(gotReasons), keys(wantReasons)) {
		t.Fatalf("dead-letter reasons %v, want %v", keys(gotReasons), keys(wantReasons))
	}
	if bigKeys != wantBigKeys {
		t.Fatalf("%d dead letters with a cut key, want %d", bigKeys, wantBigKeys)
	}
}

// A user whose hot-tier key holds something else (here a string where the
// session hash should be) makes every write for that user fail the same
// way, WRONGTYPE. The user's events go to the dead-letter topic with the
// reason, one by one; every other event of the batches they came in is
// counted exactly, and the partitions move on.
func TestIngestIsolatesRecordsTheHotTierRefuses(t *testing.T) {
	e := newIngestEnv(t, 2)
	const broken = "u-broken"
	ctx := context.Background()
	if err := e.rdb.Set(ctx, e.hot.Keys().SessionKey(broken), "not a session", 0).Err(); err != nil {
		t.Fatal(err)
	}
	group := stacktest.UniqueName("it_ingest")
	stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil, e.args(group)...)
	want := oracle{}
	var msgs []kafka.Message
	brokenEvents := 0
	for i := 0; i < 400; i++ {
		user := "u-" + strconv.Itoa(i%10)
		if i%10 == 3 {
			user, brokenEvents = broken, brokenEvents+1
		}
		ev := &schemas.Interaction{EventId: "w" + strconv.Itoa(i), UserId: user, ItemId: "sku-" + strconv.Itoa(i%7), Context: "home",
			Type: schemas.Click, EventTimeMs: time.Now().UnixMilli()}
		if user != broken {
			want.add(ev)
		}
		msgs = append(msgs, encode(t, ev, i))
	}
	w := newWriter(e.brokers, e.topic)
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	stacktest.WaitForLag(t, e.brokers, group, e.topic, time.Minute)
	e.checkCounts(t, want)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic + ".dlq", Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for n := 0; n < brokenEvents; n++ {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("%d of %d dead letters: %v", n, brokenEvents, err)
		}
		if reason := headerOf(m, consumers.HeaderError); string(m.Key) != broken || !strings.Contains(reason, "WRONGTYPE") {
			t.Fatalf("dead letter of %q with reason %q", m.Key, reason)
		}
	}
	more, cancelMore := context.WithTimeout(ctx, 2*time.Second)
	defer cancelMore()
	if m, err := r.ReadMessage(more); err == nil {
		t.Fatalf("a dead letter more than the %d events of %s: %q at %d", brokenEvents, broken, m.Key, m.Offset)
	}
}
