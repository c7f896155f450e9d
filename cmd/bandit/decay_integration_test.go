package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// decayTruth recomputes decayed counts from the events themselves.
type decayTruth struct {
	halfLife time.Duration
	events   map[state.Arm][]*schemas.Interaction
}

// at returns the arm's counts by type at atMs: Σ 2^((t − atMs)/h).
func (d decayTruth) at(a state.Arm, atMs int64) [state.NumEventTypes]float64 {
	var out [state.NumEventTypes]float64
	for _, ev := range d.events[a] {
		out[state.TypeIndex(ev.GetType())] += math.Exp2(float64(ev.GetEventTimeMs()-atMs) / float64(d.halfLife.Milliseconds()))
	}
	return out
}

func closeTo(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

// With a half-life, the decayed counts of every arm equal a recomputation
// from the topic by event time to 1e-9 relative, although the events
// arrive out of order over two days, a tenth of them twice (a producer's
// retry at another offset) and an ingest process is killed mid-stream (its
// partitions' uncommitted batches delivered again). A replay of the topic
// into a shadow namespace gives the same numbers, a promotion copies them
// bit for bit, a process given another half-life is refused before it
// writes, and a mean-mode ranking's posterior means are the decayed ones
// at the time the scorer received the request.
func TestDecayMatchesTheTopicByEventTime(t *testing.T) {
	const halfLife = time.Hour
	hl := []string{"-half-life", halfLife.String()}
	e := newCLIEnv(t, hl...)
	ctx := context.Background()
	d := sampler.Decay{HalfLife: halfLife}
	truth := decayTruth{halfLife: halfLife, events: map[state.Arm][]*schemas.Interaction{}}
	plain := armCounts{}

	victim := stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-ingest"), nil,
		append(slices.Clone(e.ingestArgs), "-fault-commit-delay", "150ms", "-fetch-max-bytes", "16384")...)
	rng := rand.New(rand.NewPCG(7, 8))
	now := time.Now().Add(-time.Minute).UnixMilli()
	types := []schemas.EventType{schemas.Impression, schemas.Impression, schemas.Impression, schemas.Impression, schemas.Click, schemas.Order}
	var sent []*schemas.Interaction
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.events, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Hash{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	for round := range 6 {
		var msgs []kafka.Message
		for range 500 {
			ev := &schemas.Interaction{EventId: fmt.Sprintf("d%d", len(sent)), UserId: "u" + strconv.Itoa(rng.IntN(40)),
				ItemId: "sku-" + strconv.Itoa(rng.IntN(12)), Context: []string{"home", "search"}[rng.IntN(2)],
				Type: types[rng.IntN(len(types))], EventTimeMs: now - rng.Int64N(48*time.Hour.Milliseconds())}
			if len(sent) > 0 && rng.IntN(10) == 0 {
				ev = sent[len(sent)-1-rng.IntN(min(len(sent), 100))] // sent again
			} else {
				a := state.Arm{Context: ev.GetContext(), Item: ev.GetItemId()}
				truth.events[a] = append(truth.events[a], ev)
				plain.add(ev)
				sent = append(sent, ev)
			}
			v, err := schemas.Protobuf.AppendInteraction(nil, ev)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Key: []byte(ev.GetUserId()), Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if round == 3 {
			time.Sleep(300 * time.Millisecond) // into a batch's commit delay
			victim.Kill()
		}
	}
	e.checkCounts(t, plain) // waits for the lag to reach 0
	var arms []state.Arm
	for a := range plain {
		arms = append(arms, a)
	}
	read := func(prefix string) []state.Counts {
		t.Helper()
		h, err := hot.New(e.rdb, hot.Keys{Prefix: prefix, Shards: 8, HalfLife: halfLife})
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.Counts(ctx, arms)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	check := func(what string, got []state.Counts) {
		t.Helper()
		for i, a := range arms {
			want := truth.at(a, now)
			n := got[i].At(now, d)
			for typ := range n {
				if !closeTo(n[typ], want[typ], 1e-9) {
					t.Fatalf("%s: arm %v type %d: decayed %v, recomputed from the topic %v", what, a, typ, n[typ], want[typ])
				}
			}
			if got[i].ByType != plain[a].ByType {
				t.Fatalf("%s: arm %v: counts %v, want %v", what, a, got[i].ByType, plain[a].ByType)
			}
		}
	}
	live := read(e.prefix)
	check("live", live)

	// A replay of the whole topic into a shadow namespace: the same events,
	// in the topic's order rather than the one ingest saw.
	shadow := stacktest.UniqueName("it_decay_shadow")
	conn := []string{"-redis-addr", e.redis, "-cql-hosts", e.cql, "-cql-migrate", "-shards", "8", "-live-key-prefix", e.prefix}
	replay := func(prefix, keyspace string, extra ...string) (string, string, int) {
		return e.bandit(t, "", append(append([]string{"replay", "-topic", e.events, "-key-prefix", prefix, "-cql-keyspace", keyspace}, conn...), extra...)...)
	}
	if out, errOut, code := replay(shadow, stacktest.UniqueName("it"), hl...); code != 0 {
		t.Fatalf("replay: exit %d\n%s\n%s", code, out, errOut)
	}
	check("shadow", read(shadow))

	// Promoted: the snapshot of every shard restored elsewhere, bit for bit.
	target := stacktest.UniqueName("it_decay_promoted")
	if out, errOut, code := e.bandit(t, "", "promote", "-redis-addr", e.redis, "-shards", "8", "-from", shadow, "-to", target); code != 0 {
		t.Fatalf("promote: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, want := read(target), read(shadow); !slices.Equal(got, want) {
		t.Fatal("the promoted namespace's counts differ from the shadow's")
	}
	if hlms, err := e.rdb.HGet(ctx, target+":ns", "halflife_ms").Result(); err != nil || hlms != "3600000" {
		t.Fatalf("promoted namespace's half-life %q (%v), want the shadow's", hlms, err)
	}

	// Another half-life for the live namespace: refused, nothing written.
	out, errOut, code := replay(e.prefix, e.keyspace, "-half-life", "2h")
	if code != 1 || !strings.Contains(errOut, "namespace "+e.prefix+" decays with half-life 1h0m0s, not 2h0m0s") {
		t.Fatalf("replay with another half-life: exit %d\n%s\n%s", code, out, errOut)
	}
	if !slices.Equal(read(e.prefix), live) {
		t.Fatal("a refused replay changed the live namespace")
	}
	// And a scorer: it exits with the reason rather than retrying.
	scorer := stacktest.StartProcess(t, stacktest.BuildBinary(t, "./cmd/bandit-score"), nil,
		append(slices.Clone(e.scoreArgs), "-half-life", "2h", "-group", stacktest.UniqueName("it_decay_score"))...)
	for deadline := time.Now().Add(time.Minute); scorer.ExitCode() < 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if code := scorer.ExitCode(); code != 1 || !strings.Contains(scorer.Output(), "decays with half-life 1h0m0s, not 2h0m0s") {
		t.Fatalf("bandit-score with another half-life: exit %d\n%s", code, scorer.Output())
	}

	// Mean mode: each posterior mean is the decayed one at the time the
	// scorer received the request (the user has no own counts).
	var items []string
	for i := range 12 {
		items = append(items, "sku-"+strconv.Itoa(i))
	}
	out, errOut, code = e.bandit(t, "", "score", "-requests-topic", e.requests, "-user", "u-nobody", "-context", "home",
		"-candidates", strings.Join(items, ","), "-k", "12", "-mode", "mean", "-timeout", "30s", "-json")
	if code != 0 {
		t.Fatalf("score: exit %d\n%s\n%s", code, out, errOut)
	}
	var resp schemas.ScoreResponse
	if err := schemas.JSON.DecodeScoreResponse(schemas.DefaultLimits(), []byte(strings.TrimSpace(out)), &resp); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.HasSuffix(resp.GetModelVersion(), ";halflife=1h0m0s") {
		t.Fatalf("model version %q", resp.GetModelVersion())
	}
	at := resp.GetTiming().GetReceivedTimeMs()
	prev := math.Inf(1)
	for _, it := range resp.GetItems() {
		n := truth.at(state.Arm{Context: "home", Item: it.GetItemId()}, at)
		want := (1 + n[1]) / (2 + n[1] + max(n[0]-n[1], 0))
		if !closeTo(it.GetMean(), want, 1e-9) {
			t.Errorf("%s: mean %v, decayed posterior at %d %v", it.GetItemId(), it.GetMean(), at, want)
		}
		if it.GetMean() > prev {
			t.Errorf("%s ranked below a lower mean", it.GetItemId())
		}
		prev = it.GetMean()
	}
}
