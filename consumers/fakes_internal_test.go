package consumers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/state"
)

// Fakes of the interfaces consumers depend on, for the unit tests: each
// keeps what the real store would in memory and records what it was asked.

// fakeArms is an in-memory ArmStore: per-shard watermarks with the same
// compare-and-set as the hot tier's apply script.
type fakeArms struct {
	mu       sync.Mutex
	shards   int
	epoch    string
	wm       map[string][]int64 // "topic/partition" → per shard
	counts   map[state.Arm]state.Counts
	decay    sampler.Decay
	applied  map[string]int64 // PartitionApplied, in epoch
	recovers int
	// conflictOnce, when set, moves the watermark of these shards to the
	// given offset (another writer) before the next Apply compares.
	conflictOnce map[int]int64
	applyErr     error
}

func newFakeArms(shards int) *fakeArms {
	return &fakeArms{shards: shards, epoch: "e1", wm: map[string][]int64{}, counts: map[state.Arm]state.Counts{}, applied: map[string]int64{}}
}

func field(topic string, partition int) string {
	return topic + "/" + string(rune('0'+partition))
}

func (f *fakeArms) Shard(a state.Arm) int { return state.Shard(a, f.shards) }

func (f *fakeArms) Decay() sampler.Decay { return f.decay }

func (f *fakeArms) marks(topic string, partition int) []int64 {
	k := field(topic, partition)
	if f.wm[k] == nil {
		f.wm[k] = make([]int64, f.shards)
		for i := range f.wm[k] {
			f.wm[k][i] = state.NoWatermark
		}
	}
	return f.wm[k]
}

func (f *fakeArms) Watermarks(_ context.Context, topic string, partition int) ([]int64, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.marks(topic, partition)...), f.epoch, nil
}

func (f *fakeArms) Apply(_ context.Context, topic string, partition int, last int64, epoch string, shards []state.ShardBatch) (map[int]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if errors.Is(f.applyErr, state.ErrConflict) {
		// Another writer that keeps moving the watermarks: every shard
		// conflicts, at the watermark it was expected at.
		current := map[int]int64{}
		for _, sb := range shards {
			current[sb.Shard] = sb.Expected
		}
		return current, state.ErrConflict
	}
	if f.applyErr != nil {
		return nil, f.applyErr
	}
	if epoch != f.epoch {
		return nil, state.ErrHotLost
	}
	wm := f.marks(topic, partition)
	for s, o := range f.conflictOnce {
		wm[s] = o
	}
	f.conflictOnce = nil
	var current map[int]int64
	for _, sb := range shards {
		if wm[sb.Shard] != sb.Expected {
			if wm[sb.Shard] == last {
				continue
			}
			if current == nil {
				current = map[int]int64{}
			}
			current[sb.Shard] = wm[sb.Shard]
			continue
		}
		for _, d := range sb.Deltas {
			c := f.counts[d.Arm]
			c.Add(d.Counts, f.decay)
			f.counts[d.Arm] = c
		}
		wm[sb.Shard] = last
	}
	if current != nil {
		return current, state.ErrConflict
	}
	return nil, nil
}

func (f *fakeArms) MarkPartitionApplied(_ context.Context, topic string, partition int, last int64, epoch string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[field(topic, partition)+"@"+epoch] = last
	return nil
}

func (f *fakeArms) PartitionApplied(_ context.Context, topic string, partition int, epoch string) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.applied[field(topic, partition)+"@"+epoch]
	return o, ok, nil
}

// Recover starts a new epoch and, like a lost hot tier, forgets everything.
func (f *fakeArms) Recover(_ context.Context, seen string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recovers++
	if f.epoch == "" || f.epoch == seen {
		f.epoch = "e" + string(rune('1'+f.recovers))
	}
	return f.epoch, nil
}

// lose drops every count and watermark, as a hot tier restarted without
// persistence.
func (f *fakeArms) lose() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.epoch, f.wm, f.counts = "", map[string][]int64{}, map[state.Arm]state.Counts{}
}

func (f *fakeArms) count(ctx, item string, typ schemas.EventType) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[state.Arm{Context: ctx, Item: item}].ByType[state.TypeIndex(typ)]
}

// fakeUsers is an in-memory UserStore whose sessions can be evicted under
// the writer.
type fakeUsers struct {
	mu      sync.Mutex
	loaded  map[string]bool
	wm      map[string]int64 // user → watermark of the partition
	events  map[string]int
	first   map[string]int64 // event id → the offset that counted
	evictN  int              // evict this many users right after the next EnsureLoaded calls
	loadErr error
}

func newFakeUsers() *fakeUsers {
	return &fakeUsers{loaded: map[string]bool{}, wm: map[string]int64{}, events: map[string]int{}, first: map[string]int64{}}
}

func (f *fakeUsers) EnsureLoaded(_ context.Context, users []string, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loadErr != nil {
		return f.loadErr
	}
	for _, u := range users {
		f.loaded[u] = true
	}
	if f.evictN > 0 {
		f.evictN--
		for _, u := range users {
			f.loaded[u] = false
		}
	}
	return nil
}

func (f *fakeUsers) ApplyUserEvents(_ context.Context, _ string, _ int, _ string, byUser map[string][]state.UserEvent) ([]string, []int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var notLoaded []string
	var dups []int64
	for u, evs := range byUser {
		if !f.loaded[u] {
			notLoaded = append(notLoaded, u)
			continue
		}
		wm, ok := f.wm[u]
		if !ok {
			wm = -1
		}
		for _, e := range evs {
			// An unbounded window: the first offset of each id counts.
			first, seen := f.first[e.Event.EventID]
			if !seen {
				f.first[e.Event.EventID] = e.Offset
			}
			if seen && first != e.Offset {
				dups = append(dups, e.Offset)
			} else if e.Offset > wm {
				f.events[u]++
			}
			wm = max(wm, e.Offset)
		}
		f.wm[u] = wm
	}
	return notLoaded, dups, nil
}

// fakeWriter records the messages written, failing as told first.
type fakeWriter struct {
	mu   sync.Mutex
	msgs []kafka.Message
	// fail returns the error of the n-th call (from 0); nil writes.
	fail func(call int, msgs []kafka.Message) error
	n    int
}

func (w *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	call := w.n
	w.n++
	if w.fail != nil {
		if err := w.fail(call, msgs); err != nil {
			// As kafka-go's writer: with an error per message, those
			// without one were written.
			var werrs kafka.WriteErrors
			if errors.As(err, &werrs) && len(werrs) == len(msgs) {
				for i, e := range werrs {
					if e == nil {
						w.msgs = append(w.msgs, msgs[i])
					}
				}
			}
			return err
		}
	}
	w.msgs = append(w.msgs, msgs...)
	return nil
}

func (w *fakeWriter) written() []kafka.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]kafka.Message(nil), w.msgs...)
}

// fakeSource serves records of one partition from memory.
type fakeSource struct {
	mu       sync.Mutex
	records  []record // offsets 0..n-1 unless set otherwise
	first    int64
	perFetch int
	fetchErr func(call int) error
	calls    int
	// after serving everything, end is called (to stop the loop)
	end func()
}

func (s *fakeSource) fetch(ctx context.Context, _ int, offset int64) ([]record, int64, error) {
	s.mu.Lock()
	call := s.calls
	s.calls++
	s.mu.Unlock()
	if s.fetchErr != nil {
		if err := s.fetchErr(call); err != nil {
			return nil, offset, err
		}
	}
	var out []record
	for _, r := range s.records {
		if r.offset >= offset && (s.perFetch == 0 || len(out) < s.perFetch) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		if s.end != nil {
			s.end()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
		return nil, offset, nil
	}
	return out, out[len(out)-1].offset + 1, nil
}

func (s *fakeSource) earliest(context.Context, int) (int64, error) { return s.first, nil }

// fakeCommitter records commits; err, when set, refuses them.
type fakeCommitter struct {
	mu      sync.Mutex
	commits []int64
	err     error
}

func (c *fakeCommitter) CommitOffsets(offsets map[string]map[int]int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	for _, ps := range offsets {
		for _, o := range ps {
			c.commits = append(c.commits, o)
		}
	}
	return nil
}

func (c *fakeCommitter) last() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.commits) == 0 {
		return -1
	}
	return c.commits[len(c.commits)-1]
}

// eventRecord encodes an event as the record at offset.
func eventRecord(t testing.TB, offset int64, user, item string, typ schemas.EventType) record {
	t.Helper()
	ev := &schemas.Interaction{
		EventId: "e" + string(rune('a'+offset%26)) + time.Duration(offset).String(), UserId: user, ItemId: item,
		Context: "home", Type: typ, EventTimeMs: time.Now().Add(-time.Minute).UnixMilli(),
	}
	v, err := schemas.Protobuf.AppendInteraction(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	return record{offset: offset, time: time.Now(), key: []byte(user), value: v,
		headers: []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(schemas.Protobuf.ContentType())}}}
}

var errTransient = errors.New("transient")
