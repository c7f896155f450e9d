package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// distinct is the oracle of distinct events: arm counts and each user's
// own counts, each event id once whatever the topic holds.
type distinct struct {
	seen  map[string]bool
	arms  armCounts
	users map[string]armCounts
}

func newDistinct() *distinct {
	return &distinct{seen: map[string]bool{}, arms: armCounts{}, users: map[string]armCounts{}}
}

func (d *distinct) add(ev *schemas.Interaction) {
	if d.seen[ev.GetEventId()] {
		return
	}
	d.seen[ev.GetEventId()] = true
	d.arms.add(ev)
	if d.users[ev.GetUserId()] == nil {
		d.users[ev.GetUserId()] = armCounts{}
	}
	d.users[ev.GetUserId()].add(ev)
}

// check compares a namespace's arm counts and hot users' own counts with
// the oracle.
func (d *distinct) check(t *testing.T, e *cliEnv, prefix, when string) {
	t.Helper()
	var arms []state.Arm
	for a := range d.arms {
		arms = append(arms, a)
	}
	if got := e.readCounts(t, prefix, arms); !sameCounts(got, d.arms) {
		t.Fatalf("%s: arm counts of %s\n got %v\nwant %v", when, prefix, got, d.arms)
	}
	h, err := hot.New(e.rdb, hot.Keys{Prefix: prefix, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range d.users {
		counts, err := h.UserArmCounts(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		got := armCounts{}
		for arm, c := range counts {
			ctx, item, _ := strings.Cut(arm, "\x1f")
			var byType [state.NumEventTypes]int64
			copy(byType[:], c)
			got[state.Arm{Context: ctx, Item: item}] = state.Counts{ByType: byType}
		}
		if !sameCounts(got, want) {
			t.Fatalf("%s: own counts of %s in %s\n got %v\nwant %v", when, user, prefix, got, want)
		}
	}
}

// An event reaches the topic at two offsets by a kafka-go retry (the
// broker's answer lost, the batch sent again) and by a producer writing it
// twice on purpose; the whole topic is replayed twice into the live
// namespace and rebuilt into a shadow; then, with ingest stopped, a replay
// by time of a range ingest has not reached runs into the live namespace
// and ingest starts again. Every count, arm and user, equals the distinct
// events' at each step, in the live and the shadow namespace. A replay
// pairing the live prefix with another keyspace is refused.
func TestEventsCountOnceWhateverPath(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	topic := stacktest.CreateTopic(t, e.brokers, "it_dedup_events", 1)
	stacktest.CreateTopicNamed(t, e.brokers, topic+".dlq", 1)
	group := stacktest.UniqueName("it_dedup_ingest")
	ingestArgs := []string{"-kafka-brokers", e.brokers[0], "-redis-addr", e.redis, "-cql-hosts", e.cql, "-cql-keyspace", e.keyspace, "-cql-migrate",
		"-key-prefix", e.prefix, "-shards", "8", "-session-timeout", "6s", "-fetch-max-wait", "50ms", "-log-level", "warn",
		"-topic", topic, "-group", group}
	ingest := stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil, ingestArgs...)
	oracle := newDistinct()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	n := 0
	event := func(b int) (*schemas.Interaction, kafka.Message) {
		n++
		ev := &schemas.Interaction{EventId: fmt.Sprintf("d%d-%d", b, n), UserId: "u" + strconv.Itoa(n%4), ItemId: "sku-" + strconv.Itoa(n%5),
			Context: "home", Type: []schemas.EventType{schemas.Impression, schemas.Click, schemas.Order}[n%3], EventTimeMs: base.UnixMilli()}
		v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
		return ev, kafka.Message{Key: []byte(ev.GetUserId()), Value: v, Time: base.Add(time.Duration(n) * time.Second)}
	}

	// A writer whose first two produce answers are lost: each of its
	// batches reaches the topic twice.
	lossy := stacktest.NewLostAcks(2)
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{},
		BatchTimeout: time.Millisecond, Transport: lossy}
	for range 2 {
		var msgs []kafka.Message
		for range 10 {
			ev, m := event(0)
			oracle.add(ev)
			msgs = append(msgs, m)
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if lossy.Lost() != 2 {
		t.Fatalf("%d answers lost, want 2", lossy.Lost())
	}
	plain := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer plain.Close()
	// Written twice on purpose, in two writes.
	var twice []kafka.Message
	for range 5 {
		ev, m := event(1)
		oracle.add(ev)
		twice = append(twice, m)
	}
	for range 2 {
		if err := plain.WriteMessages(ctx, twice...); err != nil {
			t.Fatal(err)
		}
	}
	if got := endOffset(t, e, topic); got != 50 {
		t.Fatalf("the topic holds %d records, want 50: 25 events, each twice", got)
	}
	stacktest.WaitForLag(t, e.brokers, group, topic, time.Minute)
	oracle.check(t, e, e.prefix, "ingested")

	conn := []string{"replay", "-topic", topic, "-redis-addr", e.redis, "-cql-hosts", e.cql, "-cql-migrate", "-shards", "8", "-live-key-prefix", e.prefix}
	replay := func(args ...string) string {
		t.Helper()
		out, errOut, code := e.bandit(t, "", append(conn, args...)...)
		if code != 0 {
			t.Fatalf("replay %v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		return out
	}
	for i := range 2 {
		replay("-key-prefix", e.prefix, "-cql-keyspace", e.keyspace)
		oracle.check(t, e, e.prefix, fmt.Sprintf("replay %d of the whole topic", i+1))
	}
	shadow := stacktest.UniqueName("it_dedup_shadow")
	out := replay("-key-prefix", shadow, "-cql-keyspace", stacktest.UniqueName("it"))
	if !strings.Contains(out, ": 25 events applied, 25 applied before") {
		t.Fatalf("shadow rebuild: %s", out)
	}
	oracle.check(t, e, shadow, "shadow rebuild")

	// Ingest stopped; 20 more events, some twice; a replay by time of the
	// middle of them, which ingest has not reached.
	ingest.Stop(30 * time.Second)
	var later []kafka.Message
	for i := range 20 {
		ev, m := event(2)
		oracle.add(ev)
		later = append(later, m)
		if i%4 == 0 {
			later = append(later, m)
		}
	}
	if err := plain.WriteMessages(ctx, later...); err != nil {
		t.Fatal(err)
	}
	from, to := later[5].Time, later[15].Time
	out = replay("-key-prefix", e.prefix, "-cql-keyspace", e.keyspace, "-from", from.Format(time.RFC3339), "-to", to.Format(time.RFC3339))
	if !strings.Contains(out, "started 5 offsets before the range") || !strings.Contains(out, "replayed 15 records") {
		t.Fatalf("replay ahead of ingest: %s", out)
	}
	ingest.Start()
	stacktest.WaitForLag(t, e.brokers, group, topic, time.Minute)
	oracle.check(t, e, e.prefix, "ingest after a replay ahead of it")

	// The live prefix with another namespace's keyspace: refused, nothing
	// written.
	out, errOut, code := e.bandit(t, "", append(conn, "-key-prefix", e.prefix, "-cql-keyspace", stacktest.UniqueName("it"))...)
	if code == 0 || !strings.Contains(errOut, "keeps its cold state in keyspace "+e.keyspace) {
		t.Fatalf("replay pairing the live prefix with another keyspace: exit %d\n%s\n%s", code, out, errOut)
	}
	oracle.check(t, e, e.prefix, "after a refused pairing")
}

// endOffset returns the end offset of partition 0 of topic.
func endOffset(t *testing.T, e *cliEnv, topic string) int64 {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(e.brokers...)}
	resp, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[topic][0].LastOffset
}
