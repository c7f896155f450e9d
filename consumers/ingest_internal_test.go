package consumers

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// Unit tests of ingest's decisions, with in-memory stores: no server.

func newTestIngest(t *testing.T, arms *fakeArms, users UserStore, dlq MessageWriter) *Ingest {
	t.Helper()
	stores := IngestStores{Arms: arms, Recoverer: arms}
	if users != nil {
		stores.Users = users
	}
	in, err := NewIngest(IngestConfig{Brokers: []string{"unused:9092"}, Topic: "ev"}, stores, dlq)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestNewIngestNeedsItsStores(t *testing.T) {
	arms := newFakeArms(4)
	cfg := IngestConfig{Brokers: []string{"unused:9092"}}
	for name, stores := range map[string]IngestStores{
		"no arms":      {Recoverer: arms},
		"no recoverer": {Arms: arms},
	} {
		if _, err := NewIngest(cfg, stores, &fakeWriter{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewIngest(cfg, IngestStores{Arms: arms, Recoverer: arms}, nil); err == nil {
		t.Error("no dead-letter writer: accepted")
	}
	if _, err := NewIngest(IngestConfig{}, IngestStores{Arms: arms, Recoverer: arms}, &fakeWriter{}); err == nil {
		t.Error("no brokers: accepted")
	}
}

// The resume offset: from the commit, unless the hot tier lost what the
// commit covers (then from right after what every shard holds), and from
// the earliest record when nothing was applied in this epoch or there is
// no commit.
func TestStartPartitionChoosesTheResumeOffset(t *testing.T) {
	const earliest = 7
	cases := []struct {
		name      string
		committed int64
		applied   int64 // PartitionApplied in the current epoch; -2: none
		lost      bool  // the hot tier lost its state (epoch "")
		want      int64
		recovers  int
	}{
		{name: "commit covered by the hot tier", committed: 100, applied: 99, want: 100},
		{name: "hot tier ahead of the commit", committed: 100, applied: 150, want: 100},
		{name: "hot tier behind the commit (restored snapshot)", committed: 100, applied: 49, want: 50},
		{name: "nothing applied in this epoch", committed: 100, applied: -2, want: earliest},
		{name: "no commit", committed: -1, applied: 99, want: earliest},
		{name: "hot tier lost: recover, then replay everything", committed: 100, applied: 99, lost: true, want: earliest, recovers: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			arms := newFakeArms(4)
			if c.applied != -2 {
				arms.applied[field("ev", 0)+"@e1"] = c.applied
			}
			if c.lost {
				arms.lose()
			}
			in := newTestIngest(t, arms, nil, &fakeWriter{})
			src := &fakeSource{first: earliest}
			h := &ingestPartition{in: in, p: &partitionState{topic: "ev", partition: 0}}
			offset := c.committed
			// startPartition asks the fetcher for the earliest offset: give
			// it the fake's.
			got, err := startWith(in, h.p, offset, src)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || arms.recovers != c.recovers {
				t.Fatalf("resume at %d after %d recoveries, want %d after %d", got, arms.recovers, c.want, c.recovers)
			}
			if h.p.watermarks == nil || h.p.epoch == "" {
				t.Fatalf("partition state not set: %+v", h.p)
			}
		})
	}
}

// startWith runs startPartition with src standing in for the brokers.
func startWith(in *Ingest, p *partitionState, offset int64, src source) (int64, error) {
	err := in.startPartition(context.Background(), p, &offset, src)
	return offset, err
}

// A worker that finds the epoch changed under it (someone else recovered)
// does not recover again and takes the new watermarks.
func TestStartPartitionAfterSomeoneElsesRecovery(t *testing.T) {
	arms := newFakeArms(4)
	in := newTestIngest(t, arms, nil, &fakeWriter{})
	p := &partitionState{topic: "ev", partition: 0, epoch: "e0"}
	if _, err := startWith(in, p, 5, &fakeSource{}); err != nil {
		t.Fatal(err)
	}
	if p.epoch != "e1" {
		t.Fatalf("epoch %q, want the current e1", p.epoch)
	}
	if arms.recovers != 1 {
		t.Fatalf("%d recoveries; the recoverer decides (it sees e1 != e0 and keeps e1)", arms.recovers)
	}
}

func batchOf(t *testing.T, from int64, items ...string) []record {
	var out []record
	for i, it := range items {
		typ := schemas.Impression
		if strings.HasPrefix(it, "+") {
			typ, it = schemas.Click, it[1:]
		}
		out = append(out, eventRecord(t, from+int64(i), "u"+string(rune('a'+i%3)), it, typ))
	}
	return out
}

func started(t *testing.T, in *Ingest) *partitionState {
	t.Helper()
	p := &partitionState{topic: "ev", partition: 0}
	if _, err := startWith(in, p, -1, &fakeSource{}); err != nil {
		t.Fatal(err)
	}
	return p
}

// A batch processed twice (redelivered after a crash before the commit)
// counts once: the second pass is all duplicates.
func TestProcessCountsARedeliveredBatchOnce(t *testing.T) {
	arms, users := newFakeArms(4), newFakeUsers()
	in := newTestIngest(t, arms, users, &fakeWriter{})
	p := started(t, in)
	batch := batchOf(t, 0, "a", "+a", "b", "+b", "a")
	for i := 0; i < 2; i++ {
		if err := in.process(context.Background(), p, batch); err != nil {
			t.Fatal(err)
		}
	}
	if got := arms.count("home", "a", schemas.Impression); got != 2 {
		t.Fatalf("a: %d impressions, want 2", got)
	}
	if got := arms.count("home", "b", schemas.Click); got != 1 {
		t.Fatalf("b: %d clicks, want 1", got)
	}
	st := in.Stats()
	if st.Applied != 5 || st.Duplicates != 5 || st.Batches != 2 {
		t.Fatalf("stats %+v, want 5 applied and 5 duplicates in 2 batches", st)
	}
	if n := users.events["ua"] + users.events["ub"] + users.events["uc"]; n != 5 {
		t.Fatalf("users got %d events, want 5", n)
	}
	if o, ok, _ := arms.PartitionApplied(context.Background(), "ev", 0, p.epoch); !ok || o != 4 {
		t.Fatalf("partition applied up to %d (%v), want 4", o, ok)
	}
}

// Another writer of the same partition (a former owner still running)
// applied part of the batch to one shard: the compare-and-set refuses
// that shard, ingest takes its watermark and applies only what is above.
func TestProcessConflictAppliesOnlyWhatIsAbove(t *testing.T) {
	arms := newFakeArms(1) // one shard: every event conflicts together
	in := newTestIngest(t, arms, nil, &fakeWriter{})
	p := started(t, in)
	batch := batchOf(t, 0, "a", "a", "a", "a")
	// The other writer counted offsets 0 and 1 already.
	arms.counts[state.Arm{Context: "home", Item: "a"}] = state.Counts{ByType: [state.NumEventTypes]int64{2}}
	arms.conflictOnce = map[int]int64{0: 1}
	if err := in.process(context.Background(), p, batch); err != nil {
		t.Fatal(err)
	}
	if got := arms.count("home", "a", schemas.Impression); got != 4 {
		t.Fatalf("%d impressions, want 4 (2 by the other writer, 2 here)", got)
	}
	if p.watermarks[0] != 3 {
		t.Fatalf("watermark %d, want 3", p.watermarks[0])
	}
}

// A conflict that keeps coming back (a writer racing without end) is an
// error after a few attempts, not a loop: the batch is fetched again.
func TestProcessGivesUpOnEndlessConflicts(t *testing.T) {
	arms := newFakeArms(1)
	in := newTestIngest(t, arms, nil, &fakeWriter{})
	p := started(t, in)
	arms.applyErr = state.ErrConflict
	if err := in.process(context.Background(), p, batchOf(t, 0, "a")); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("err %v, want a conflict", err)
	}
}

// Bad records go to the dead-letter topic with the reason, after the
// batch's effects: a batch that fails in the hot tier writes none, and a
// batch retried (after the hot tier's failure or the dead-letter write's)
// counts its events once and writes its dead letters once.
func TestProcessDeadLetters(t *testing.T) {
	arms := newFakeArms(4)
	dlq := &fakeWriter{}
	in := newTestIngest(t, arms, nil, dlq)
	p := started(t, in)
	batch := batchOf(t, 0, "a", "b")
	batch = append(batch, record{offset: 2, key: []byte("k"), value: []byte("not protobuf \xff\xff")})
	bad := eventRecord(t, 3, "u", "c", schemas.Click)
	bad.headers = []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte("text/csv")}}
	batch = append(batch, bad)

	arms.applyErr = errTransient // the hot tier away, or full
	if err := in.process(context.Background(), p, batch); !errors.Is(err, errTransient) {
		t.Fatalf("err %v, want the hot tier's", err)
	}
	if n := len(dlq.written()); n != 0 {
		t.Fatalf("%d dead letters written by a batch that failed before its effects were in", n)
	}
	arms.applyErr = nil
	dlq.fail = func(int, []kafka.Message) error { return errTransient }
	if err := in.process(context.Background(), p, batch); !errors.Is(err, errTransient) {
		t.Fatalf("err %v, want the DLQ's", err)
	}
	dlq.fail = nil
	if err := in.process(context.Background(), p, batch); err != nil {
		t.Fatal(err)
	}
	if got := arms.count("home", "a", schemas.Impression); got != 1 {
		t.Fatalf("counted %d impressions of a, want 1 across the retries", got)
	}
	msgs := dlq.written()
	if len(msgs) != 2 {
		t.Fatalf("%d dead letters, want 2", len(msgs))
	}
	for _, m := range msgs {
		if headerValue(m.Headers, HeaderError) == "" || headerValue(m.Headers, HeaderOriginTopic) != "ev" {
			t.Fatalf("dead letter without its reason or origin: %v", m.Headers)
		}
	}
	if o := headerValue(msgs[1].Headers, HeaderOriginOffset); o != "3" {
		t.Fatalf("origin offset %q, want 3", o)
	}
	// The events were applied by the attempt whose dead letters failed:
	// the retry meets them at the watermarks.
	if st := in.Stats(); st.DeadLetters != 2 || st.Duplicates != 2 || st.Applied != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDeadLetterCutsLargeValues(t *testing.T) {
	r := &record{offset: 9, value: make([]byte, DeadLetterMaxValueBytes+10)}
	m := deadLetter("ev", 1, r, &schemas.FieldError{Field: "user_id"})
	if len(m.Value) != DeadLetterMaxValueBytes {
		t.Fatalf("value %d bytes, want %d", len(m.Value), DeadLetterMaxValueBytes)
	}
	if headerValue(m.Headers, HeaderTruncated) != "262154" || headerValue(m.Headers, HeaderErrorField) != "user_id" {
		t.Fatalf("headers %v", m.Headers)
	}
}

// A record with a 2 MiB key and 2 MiB headers (the broker takes them under
// compression) makes a dead letter within what a default broker accepts.
func TestDeadLetterBoundsKeyAndHeaders(t *testing.T) {
	const brokerDefault = 1 << 20 // Kafka's message.max.bytes default is 1048588
	big := make([]byte, 2<<20)
	r := &record{offset: 9, key: big, value: big, headers: []kafka.Header{
		{Key: "trace", Value: big}, {Key: string(big[:300]), Value: []byte("x")},
		{Key: "a", Value: big[:40<<10]}, {Key: "b", Value: big[:40<<10]}, {Key: "small", Value: []byte("kept?")},
	}}
	m := deadLetter("ev", 1, r, errors.New(string(big)))
	size := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		size += len(h.Key) + len(h.Value)
	}
	if size > brokerDefault/2 {
		t.Fatalf("dead letter of %d bytes, want at most %d", size, brokerDefault/2)
	}
	if headerValue(m.Headers, HeaderKeyTruncated) != strconv.Itoa(len(big)) || len(m.Key) != DeadLetterMaxKeyBytes {
		t.Fatalf("key %d bytes, %s = %q", len(m.Key), HeaderKeyTruncated, headerValue(m.Headers, HeaderKeyTruncated))
	}
	if headerValue(m.Headers, HeaderHeadersTruncated) == "" || headerValue(m.Headers, HeaderOriginOffset) != "9" ||
		len(headerValue(m.Headers, "trace")) != deadLetterMaxHeaderValue {
		t.Fatalf("headers: %s = %q, origin %q, trace %d bytes", HeaderHeadersTruncated, headerValue(m.Headers, HeaderHeadersTruncated),
			headerValue(m.Headers, HeaderOriginOffset), len(headerValue(m.Headers, "trace")))
	}
}

// A user evicted between the load and the apply is loaded again; one
// evicted again and again is an error, not a loop.
func TestApplyUsersReloadsEvictedSessions(t *testing.T) {
	arms, users := newFakeArms(4), newFakeUsers()
	in := newTestIngest(t, arms, users, &fakeWriter{})
	p := started(t, in)
	users.evictN = 2
	if err := in.process(context.Background(), p, batchOf(t, 0, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if users.events["ua"] != 1 || users.events["ub"] != 1 {
		t.Fatalf("user events %v", users.events)
	}
	users.evictN = 100
	if err := in.process(context.Background(), p, batchOf(t, 2, "a")); err == nil || !strings.Contains(err.Error(), "evicted") {
		t.Fatalf("err %v, want an eviction error", err)
	}
	users.evictN, users.loadErr = 0, errTransient
	if err := in.process(context.Background(), p, batchOf(t, 3, "a")); !errors.Is(err, errTransient) {
		t.Fatalf("err %v, want the load's", err)
	}
}

func TestAggregate(t *testing.T) {
	a, b := state.Arm{Context: "x", Item: "a"}, state.Arm{Context: "x", Item: "b"}
	ev := func(off int64, shard int, arm state.Arm, typ int, ms int64) goodEvent {
		return goodEvent{offset: off, shard: shard, arm: arm, typ: typ, timeMs: ms}
	}
	cases := []struct {
		name   string
		events []goodEvent
		wm     []int64
		want   map[int]map[state.Arm]state.Counts
	}{
		{name: "nothing", wm: []int64{-1, -1}, want: map[int]map[state.Arm]state.Counts{}},
		{
			name:   "summed per shard and arm, latest time kept",
			events: []goodEvent{ev(0, 0, a, 0, 5), ev(1, 0, a, 1, 9), ev(2, 0, a, 0, 7), ev(3, 1, b, 4, 1)},
			wm:     []int64{-1, -1},
			want: map[int]map[state.Arm]state.Counts{
				0: {a: {ByType: [state.NumEventTypes]int64{2, 1}, LastEventMs: 9}},
				1: {b: {ByType: [state.NumEventTypes]int64{0, 0, 0, 0, 1}, LastEventMs: 1}},
			},
		},
		{
			name:   "at or below the watermark: skipped",
			events: []goodEvent{ev(0, 0, a, 0, 5), ev(1, 0, a, 0, 5), ev(2, 1, b, 0, 5)},
			wm:     []int64{1, 5},
			want:   map[int]map[state.Arm]state.Counts{},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[int]map[state.Arm]state.Counts{}
			for _, sb := range aggregate(c.events, c.wm, sampler.Decay{}) {
				if sb.Expected != c.wm[sb.Shard] {
					t.Fatalf("shard %d expects %d, want its watermark %d", sb.Shard, sb.Expected, c.wm[sb.Shard])
				}
				got[sb.Shard] = map[state.Arm]state.Counts{}
				for _, d := range sb.Deltas {
					got[sb.Shard][d.Arm] = d.Counts
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for s, arms := range c.want {
				for arm, counts := range arms {
					if got[s][arm] != counts {
						t.Fatalf("shard %d arm %v: %+v, want %+v", s, arm, got[s][arm], counts)
					}
				}
			}
		})
	}
}

// A replay counts what it would change (dry) or applies it, and a replay of
// what is already applied changes nothing. A replay of the live namespace
// whose range starts past what the namespace applied starts right after
// it (here, from the earliest record: nothing applied), so that no event
// is left under a watermark; a shadow with nothing applied starts where
// its range does.
func TestReplayThroughTheLoop(t *testing.T) {
	arms := newFakeArms(4)
	in := newTestIngest(t, arms, nil, &fakeWriter{})
	src := &fakeSource{records: batchOf(t, 0, "a", "b", "a", "c"), perFetch: 3}
	replay := func(dry, shadow bool, from int64) ReplayStats {
		p := &partitionState{topic: "ev", partition: 0, replay: true, shadow: shadow}
		l := &loop{src: src, h: &ingestPartition{in: in, p: p, dry: dry, src: src}, topic: "ev", end: 4}
		if err := l.replay(context.Background(), from); err != nil {
			t.Fatal(err)
		}
		return p.stats
	}
	run := func(dry bool) ReplayStats { return replay(dry, false, 0) }
	if st := replay(true, true, 2); st.Records != 2 || st.New != 2 {
		t.Fatalf("dry run of a shadow from offset 2: %+v", st)
	}
	if st := replay(true, false, 2); st.Records != 4 || st.New != 4 || arms.count("home", "a", schemas.Impression) != 0 {
		t.Fatalf("dry run from offset 2 of a namespace with nothing applied: %+v, and it wrote", st)
	}
	if st := run(false); st.New != 4 || arms.count("home", "a", schemas.Impression) != 2 {
		t.Fatalf("replay: %+v", st)
	}
	if st := run(false); st.New != 0 || st.Known != 4 {
		t.Fatalf("second replay: %+v, want 4 known", st)
	}
}

// A batch counts as done only once Durable says its writes are durable:
// an error fails it, and so does a change of the hot tier's masters since
// the previous batch (a failover while it was written); the retry that
// follows passes.
func TestHandleWaitsForDurableWrites(t *testing.T) {
	arms := newFakeArms(2)
	in := newTestIngest(t, arms, nil, &fakeWriter{})
	masters, waitErr := "m1,m2", error(nil)
	calls := 0
	in.cfg.Durable = func(context.Context) (string, error) {
		calls++
		return masters, waitErr
	}
	h := &ingestPartition{in: in, p: started(t, in)}
	ctx := context.Background()
	if err := h.handle(ctx, ctx, batchOf(t, 0, "a", "b")); err != nil || calls != 1 {
		t.Fatalf("first batch: %v after %d waits, want done after 1", err, calls)
	}
	waitErr = errors.New("1 of 1 replicas after 1s")
	if err := h.handle(ctx, ctx, batchOf(t, 2, "a")); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("batch whose wait failed: %v, want the wait's error", err)
	}
	waitErr, masters = nil, "m1,m3"
	if err := h.handle(ctx, ctx, batchOf(t, 2, "a")); err == nil || !strings.Contains(err.Error(), "masters changed") {
		t.Fatalf("batch written across a failover: %v, want it failed", err)
	}
	if err := h.handle(ctx, ctx, batchOf(t, 2, "a")); err != nil {
		t.Fatalf("the retry on the new masters: %v", err)
	}
	if got := arms.count("home", "a", schemas.Impression); got != 2 {
		t.Fatalf("a: %d impressions, want 2 (the retries count once)", got)
	}
}
