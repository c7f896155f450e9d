package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

type armCounts map[state.Arm]state.Counts

func (a armCounts) add(ev *schemas.Interaction) {
	k := state.Arm{Context: ev.GetContext(), Item: ev.GetItemId()}
	c := a[k]
	c.ByType[state.TypeIndex(ev.GetType())]++
	a[k] = c
}

// readCounts reads every arm of want and of also from a namespace.
func (e *cliEnv) readCounts(t *testing.T, prefix string, arms []state.Arm) armCounts {
	t.Helper()
	h, err := hot.New(e.rdb, hot.Keys{Prefix: prefix, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.Counts(context.Background(), arms)
	if err != nil {
		t.Fatal(err)
	}
	out := armCounts{}
	for i, a := range arms {
		if got[i].ByType != ([state.NumEventTypes]int64{}) {
			out[a] = state.Counts{ByType: got[i].ByType}
		}
	}
	return out
}

func sameCounts(a, b armCounts) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k].ByType != v.ByType {
			return false
		}
	}
	return true
}

// Replaying a range twice into the live namespace changes nothing; a dry
// run into a fresh namespace says what would change and writes nothing; a
// shadow rebuild from the whole topic equals the live state and can be
// promoted; a replay by time selects exactly the events stamped in the
// range; replayed score requests go to the chosen results topic only.
func TestReplay(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	session := func() *gocql.Session {
		cluster := stacktest.CQLCluster(t)
		s, err := cluster.CreateSession()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	defer session.Close()

	// Three batches stamped an hour apart, in the past; one bad record.
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	batches := []armCounts{{}, {}, {}}
	all := armCounts{}
	var arms []state.Arm
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.events, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	for b := 0; b < 3; b++ {
		var msgs []kafka.Message
		for i := 0; i < 100; i++ {
			ev := &schemas.Interaction{EventId: fmt.Sprintf("r%d-%d", b, i), UserId: "u" + strconv.Itoa(i%9), ItemId: "sku-" + strconv.Itoa((i*7+b)%13),
				Context: "home", Type: []schemas.EventType{schemas.Impression, schemas.Impression, schemas.Click}[i%3], EventTimeMs: base.UnixMilli()}
			v, _ := schemas.Protobuf.AppendInteraction(nil, ev)
			msgs = append(msgs, kafka.Message{Key: []byte(ev.GetUserId()), Value: v, Time: base.Add(time.Duration(b) * time.Hour)})
			batches[b].add(ev)
			all.add(ev)
		}
		if b == 1 {
			msgs = append(msgs, kafka.Message{Key: []byte("u"), Value: []byte{0xff}, Time: base.Add(time.Hour)})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	for a := range all {
		arms = append(arms, a)
	}
	e.checkCounts(t, all)

	conn := []string{"-redis-addr", e.redis, "-cql-hosts", e.cql, "-cql-migrate", "-shards", "8", "-live-key-prefix", e.prefix}
	replay := func(args ...string) string {
		t.Helper()
		out, errOut, code := e.bandit(t, "", append(append([]string{"replay", "-topic", e.events}, conn...), args...)...)
		if code != 0 {
			t.Fatalf("replay %v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		return out
	}

	// Into live, twice: nothing new.
	for i := 0; i < 2; i++ {
		out := replay("-key-prefix", e.prefix, "-cql-keyspace", e.keyspace)
		if !strings.Contains(out, "replayed 301 records") || !strings.Contains(out, ": 0 events applied, 300 applied before (skipped), 1 bad") {
			t.Fatalf("replay %d into live: %s", i+1, out)
		}
		if got := e.readCounts(t, e.prefix, arms); !sameCounts(got, all) {
			t.Fatalf("live counts changed by replay %d", i+1)
		}
	}

	// Dry run into a fresh namespace: all 300 would apply; nothing written.
	dry := stacktest.UniqueName("it_dry")
	out := replay("-key-prefix", dry, "-cql-keyspace", stacktest.UniqueName("it"), "-dry-run")
	if !strings.Contains(out, "300 events would be applied") {
		t.Fatalf("dry run: %s", out)
	}
	if n := stacktest.Keys(t, e.rdb, dry+":*"); len(n) != 0 {
		t.Fatalf("the dry run wrote %d keys", len(n))
	}

	// Shadow rebuild from the whole topic equals live; promoted into a
	// third namespace, it is the same again.
	shadow, shadowKS := stacktest.UniqueName("it_shadow"), stacktest.UniqueName("it")
	t.Cleanup(func() { _ = session.Query("DROP KEYSPACE IF EXISTS " + shadowKS).Exec() })
	out = replay("-key-prefix", shadow, "-cql-keyspace", shadowKS, "-progress", "always")
	if !strings.Contains(out, ": 300 events applied, 0 applied before") || !regexp.MustCompile(`shadow namespace \S+ holds [1-9]\d* keys, [1-9]\d* bytes; they expire in 24h0m0s`).MatchString(out) {
		t.Fatalf("shadow rebuild: %s", out)
	}
	// The shadow's keys expire; the live namespace's do not.
	for prefix, expires := range map[string]bool{shadow: true, e.prefix: false} {
		keys := stacktest.Keys(t, e.rdb, prefix+":*")
		if len(keys) == 0 {
			t.Fatalf("namespace %s has no keys", prefix)
		}
		for _, k := range keys {
			ttl, err := e.rdb.TTL(ctx, k).Result()
			if err != nil || (ttl > 0) != expires || ttl > 24*time.Hour {
				t.Fatalf("key %s has TTL %v (%v); expiring: want %v", k, ttl, err, expires)
			}
		}
	}
	out, errOut, code := e.bandit(t, "", "diff", "-redis-addr", e.redis, "-shards", "8", "-key-prefix", e.prefix, "-against", shadow)
	if code != 0 || !strings.Contains(out, "13 equal, 0 differ, 0 only in") {
		t.Fatalf("diff live against the shadow: exit %d\n%s\n%s", code, out, errOut)
	}
	target := stacktest.UniqueName("it_promoted")
	out, errOut, code = e.bandit(t, "", "promote", "-redis-addr", e.redis, "-shards", "8", "-from", shadow, "-to", target)
	if code != 0 || !strings.Contains(out, "promoted") {
		t.Fatalf("promote: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := e.readCounts(t, target, arms); !sameCounts(got, all) {
		t.Fatal("the promoted namespace differs from live")
	}
	// diff fails (exit 1) on namespaces that differ.
	if _, _, code := e.bandit(t, "", "diff", "-redis-addr", e.redis, "-shards", "8", "-key-prefix", e.prefix, "-against", dry); code != 1 {
		t.Fatalf("diff against an empty namespace: exit %d, want 1", code)
	}

	// By time: the middle hour only.
	byTime, byTimeKS := stacktest.UniqueName("it_time"), stacktest.UniqueName("it")
	t.Cleanup(func() { _ = session.Query("DROP KEYSPACE IF EXISTS " + byTimeKS).Exec() })
	out = replay("-key-prefix", byTime, "-cql-keyspace", byTimeKS,
		"-from", base.Add(time.Hour).Format(time.RFC3339), "-to", base.Add(2*time.Hour).Format(time.RFC3339))
	if !strings.Contains(out, "replayed 101 records") || !strings.Contains(out, ": 100 events applied") {
		t.Fatalf("replay by time: %s", out)
	}
	if got := e.readCounts(t, byTime, arms); !sameCounts(got, batches[1]) {
		t.Fatalf("replay by time: counts %v, want the middle batch's %v", got, batches[1])
	}

	// Score requests, past their deadline and with a reply topic, replayed
	// into a results topic of the operator's choice.
	reply := stacktest.CreateTopic(t, e.brokers, "it_live_reply", 1)
	offline := stacktest.CreateTopic(t, e.brokers, "it_offline", 1)
	requests := stacktest.CreateTopic(t, e.brokers, "it_old_requests", 2)
	rw := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: requests, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		v, _ := schemas.Protobuf.AppendScoreRequest(nil, &schemas.ScoreRequest{RequestId: "old-" + strconv.Itoa(i), UserId: "u1", Context: "home",
			Candidates: []string{"sku-1", "sku-2", "sku-3"}, K: 2, ReplyTopic: reply, DeadlineMs: base.UnixMilli()})
		msgs = append(msgs, kafka.Message{Key: []byte("u1"), Value: v})
	}
	if err := rw.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	rw.Close()
	if _, errOut, code := e.bandit(t, "", append(append([]string{"replay", "-topic", requests}, conn...), "-results-topic", "score-results")...); code != 1 ||
		!strings.Contains(errOut, "other than the live score-results") {
		t.Fatalf("replay into the live results topic: exit %d\n%s", code, errOut)
	}
	out, errOut, code = e.bandit(t, "", append(append([]string{"replay", "-topic", requests}, conn...), "-key-prefix", e.prefix, "-results-topic", offline)...)
	if code != 0 || !strings.Contains(out, "scored 20 requests") {
		t.Fatalf("replay of requests: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = e.bandit(t, "", "tail", "-topic", offline, "-from", "beginning", "-kind", "response")
	if n := strings.Count(out, `"request_id":"old-`); n != 20 {
		t.Fatalf("%d responses in the offline topic, want 20", n)
	}
	if out, _, _ := e.bandit(t, "", "tail", "-topic", reply, "-from", "beginning"); out != "" {
		t.Fatalf("the live reply topic got responses: %s", out)
	}
}
