package consumers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingHandler handles batches as told and records them.
type recordingHandler struct {
	mu      sync.Mutex
	starts  []int64
	batches [][]int64
	fail    func(call int) error
	calls   int
	from    int64 // what start returns for a negative offset
}

func (h *recordingHandler) start(_ context.Context, offset int64) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts = append(h.starts, offset)
	if offset < 0 {
		return h.from, nil
	}
	return offset, nil
}

func (h *recordingHandler) handle(_, _ context.Context, batch []record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	call := h.calls
	h.calls++
	if h.fail != nil {
		if err := h.fail(call); err != nil {
			return err
		}
	}
	var offs []int64
	for _, r := range batch {
		offs = append(offs, r.offset)
	}
	h.batches = append(h.batches, offs)
	return nil
}

func records(n int) []record {
	out := make([]record, n)
	for i := range out {
		out[i] = record{offset: int64(i), time: time.UnixMilli(int64(1000 * i))}
	}
	return out
}

// noWait is a backoff that does not wait, so retries run at once.
func noWait() *backoff { return &backoff{} }

// runUntilDrained consumes src until it has served everything.
func runUntilDrained(t *testing.T, l *loop, offset int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := l.src.(*fakeSource)
	src.end = cancel
	l.newBackoff = noWait
	l.drainTimeout = time.Second
	l.consume(ctx, ctx, offset)
}

func TestLoopCommitsEachBatchOnceHandled(t *testing.T) {
	h, gen := &recordingHandler{}, &fakeCommitter{}
	l := &loop{src: &fakeSource{records: records(5), perFetch: 2}, h: h, topic: "t", gen: gen}
	runUntilDrained(t, l, 0)
	if got := gen.commits; len(got) != 3 || got[0] != 2 || got[2] != 5 {
		t.Fatalf("commits %v, want 2, 4, 5", got)
	}
	if len(h.batches) != 3 {
		t.Fatalf("batches %v", h.batches)
	}
}

// A failed batch is fetched and handled again, after start decides again
// where to fetch from; nothing is committed past it meanwhile.
func TestLoopRetriesAFailedBatchFromStart(t *testing.T) {
	h := &recordingHandler{fail: func(call int) error {
		if call == 1 || call == 2 {
			return errTransient
		}
		return nil
	}}
	gen := &fakeCommitter{}
	l := &loop{src: &fakeSource{records: records(4), perFetch: 2}, h: h, topic: "t", gen: gen}
	runUntilDrained(t, l, 0)
	if len(h.starts) != 3 || h.starts[1] != 2 || h.starts[2] != 2 {
		t.Fatalf("starts %v, want 0 then 2 twice", h.starts)
	}
	if len(h.batches) != 2 || h.batches[1][0] != 2 {
		t.Fatalf("handled %v, want [0 1] [2 3]", h.batches)
	}
	if got := gen.commits; len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Fatalf("commits %v, want 2, 4", got)
	}
}

// Without a commit, start says where to begin; nothing is committed until
// a batch is handled.
func TestLoopStartsWhereStartSays(t *testing.T) {
	h, gen := &recordingHandler{from: 3}, &fakeCommitter{}
	l := &loop{src: &fakeSource{records: records(5)}, h: h, topic: "t", gen: gen}
	runUntilDrained(t, l, -1)
	if h.batches[0][0] != 3 || gen.last() != 5 {
		t.Fatalf("handled %v, committed %v", h.batches, gen.commits)
	}
}

// A refused commit means the generation is over: the loop returns at once.
func TestLoopEndsWhenTheCommitIsRefused(t *testing.T) {
	h := &recordingHandler{}
	gen := &fakeCommitter{err: errors.New("rebalance in progress")}
	l := &loop{src: &fakeSource{records: records(6), perFetch: 2}, h: h, topic: "t", gen: gen, newBackoff: noWait}
	done := make(chan struct{})
	go func() {
		l.consume(context.Background(), context.Background(), 0)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop went on after its commit was refused")
	}
	if len(h.batches) != 1 {
		t.Fatalf("handled %d batches after the refusal, want 1", len(h.batches))
	}
}

// With a commit interval, commits are spaced by time, and the position
// reached is committed when the loop ends; the hook runs before each.
func TestLoopSpacesCommitsByInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(40 * time.Millisecond)
		return now
	}
	hooks := 0
	h, gen := &recordingHandler{}, &fakeCommitter{}
	l := &loop{src: &fakeSource{records: records(10), perFetch: 1}, h: h, topic: "t", gen: gen,
		commitInterval: 200 * time.Millisecond, now: clock,
		beforeCommit: func(context.Context) error { hooks++; return nil }}
	runUntilDrained(t, l, 0)
	if len(h.batches) != 10 {
		t.Fatalf("handled %d batches", len(h.batches))
	}
	if n := len(gen.commits); n < 2 || n > 5 || gen.last() != 10 {
		t.Fatalf("commits %v: want a few, spaced, ending at 10", gen.commits)
	}
	if hooks != len(gen.commits) {
		t.Fatalf("hook ran %d times for %d commits", hooks, len(gen.commits))
	}
}

// Fetch errors are retried; the loop keeps its position.
func TestLoopRetriesFetchErrors(t *testing.T) {
	h, gen := &recordingHandler{}, &fakeCommitter{}
	src := &fakeSource{records: records(3), fetchErr: func(call int) error {
		if call < 3 {
			return errTransient
		}
		return nil
	}}
	l := &loop{src: src, h: h, topic: "t", gen: gen}
	runUntilDrained(t, l, 0)
	if len(h.batches) != 1 || gen.last() != 3 {
		t.Fatalf("handled %v, commits %v", h.batches, gen.commits)
	}
}

func TestReplayKeepsToTheRange(t *testing.T) {
	cases := []struct {
		name             string
		from, end        int64
		fromTime, toTime time.Time
		want             []int64
	}{
		{name: "offsets", from: 2, end: 6, want: []int64{2, 3, 4, 5}},
		{name: "offsets and time", from: 0, end: 9, fromTime: time.UnixMilli(3000), toTime: time.UnixMilli(5000), want: []int64{3, 4}},
		{name: "empty", from: 4, end: 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &recordingHandler{}
			passed := 0
			l := &loop{src: &fakeSource{records: records(10), perFetch: 3}, h: h, topic: "t", end: c.end,
				fromTime: c.fromTime, toTime: c.toTime, progress: func(n int) { passed += n }}
			if err := l.replay(context.Background(), c.from); err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, b := range h.batches {
				got = append(got, b...)
			}
			if len(got) != len(c.want) {
				t.Fatalf("handled %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("handled %v, want %v", got, c.want)
				}
			}
			if passed != int(c.end-c.from) {
				t.Fatalf("progress %d, want %d", passed, c.end-c.from)
			}
		})
	}
}

// A replay is a command: its errors end it, and a range the topic no
// longer holds is an error, not a hang.
func TestReplayReturnsErrors(t *testing.T) {
	h := &recordingHandler{fail: func(int) error { return errTransient }}
	l := &loop{src: &fakeSource{records: records(3)}, h: h, topic: "t", end: 3}
	if err := l.replay(context.Background(), 0); !errors.Is(err, errTransient) {
		t.Fatalf("err %v", err)
	}
	l = &loop{src: &fakeSource{records: records(3), fetchErr: func(int) error { return errTransient }}, h: &recordingHandler{}, topic: "t", end: 3}
	if err := l.replay(context.Background(), 0); !errors.Is(err, errTransient) {
		t.Fatalf("err %v", err)
	}
	l = &loop{src: &fakeSource{records: records(3)}, h: &recordingHandler{}, topic: "t", end: 9}
	if err := l.replay(context.Background(), 5); err == nil || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("err %v, want no progress", err)
	}
}
