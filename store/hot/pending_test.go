package hot_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/banditstream/banditstream/store/state"
)

// beforeZRem runs a function once, just before the first ZREM on a
// pending set: what another process does between an evictor's evict and
// its removal of the user's pending entry.
type beforeZRem struct {
	once sync.Once
	do   func(ctx context.Context) error
}

func (h *beforeZRem) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforeZRem) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *beforeZRem) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == "zrem" && len(args) > 1 && strings.Contains(args[1].(string), ":pend:") {
			var err error
			h.once.Do(func() { err = h.do(ctx) })
			if err != nil {
				return err
			}
		}
		return next(ctx, cmd)
	}
}

type pendingEnv struct {
	h     *hot.Hot
	epoch string
}

// load installs an empty session of user and applies one event at offset.
func (e pendingEnv) load(ctx context.Context, user string, offset int64) error {
	token, ok, err := e.h.LockSession(ctx, user, 10*time.Second)
	if err != nil || !ok {
		return errors.Join(err, errors.New("lock not taken"))
	}
	if _, err := e.h.InstallSession(ctx, token, e.epoch, state.UserState{UserID: user}, nil, time.Now().UnixMilli()); err != nil {
		return err
	}
	ev := state.HistoryEvent{UserID: user, EventID: "e" + user, ItemID: "i", Context: "c", Type: int32(schemas.Click), EventTimeMs: 1}
	notLoaded, _, _, err := e.h.ApplyUserEvents(ctx, "ev", 0, e.epoch, map[string][]state.UserEvent{user: {{Offset: offset, Event: ev}}}, state.SessionLimits{HistoryCap: 10}, time.Now().UnixMilli())
	if err == nil && len(notLoaded) > 0 {
		err = errors.New("not loaded")
	}
	return err
}

func (e pendingEnv) replayFrom(t *testing.T) int64 {
	t.Helper()
	pos, err := e.h.ReplayPositions(context.Background(), e.epoch)
	if err != nil {
		t.Fatal(err)
	}
	return pos["ev/0"]
}

// The pending set names sessions, not users: a user evicted and loaded
// again between the evictor's evict and its removal of the pending entry
// keeps the new session's entry, so a snapshot still replays its events;
// an entry left behind by an evictor that died before removing it does not
// pin the replay position for ever.
func TestPendingEntriesFollowSessions(t *testing.T) {
	ctx := context.Background()
	// A hot user with an event at offset 5 of ev/0, whose session is read
	// for an offload; the partition is applied up to 20. beforeRemoval
	// runs between the evict and its removal of the pending entry.
	offload := func(t *testing.T, beforeRemoval func(th testHot) func(context.Context) error) (testHot, error) {
		th := newTestHot(t)
		e := pendingEnv{th.h, th.epoch}
		if err := e.load(ctx, "u", 5); err != nil {
			t.Fatal(err)
		}
		if err := th.h.MarkPartitionApplied(ctx, "ev", 0, 20, th.epoch); err != nil {
			t.Fatal(err)
		}
		th.rdb.AddHook(&beforeZRem{do: beforeRemoval(th)})
		s, ok, err := th.h.ReadSession(ctx, "u")
		if !ok || err != nil {
			t.Fatalf("reading the session: %v, %v", ok, err)
		}
		evicted, err := th.h.EvictSession(ctx, s)
		if !evicted {
			t.Fatalf("not evicted: %v", err)
		}
		return th, err
	}
	t.Run("a reload between evict and removal keeps its entry", func(t *testing.T) {
		th, err := offload(t, func(th testHot) func(context.Context) error {
			other := stacktest.Redis(t)
			again, err := hot.New(other, th.h.Keys())
			if err != nil {
				t.Fatal(err)
			}
			// The session is evicted by now: another ingest loads the user
			// again and applies a new event at offset 12.
			return func(ctx context.Context) error { return pendingEnv{again, th.epoch}.load(ctx, "u", 12) }
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := (pendingEnv{th.h, th.epoch}).replayFrom(t); got != 12 {
			t.Fatalf("replay from %d, want 12: the reloaded session's event is not in the cold tier", got)
		}
	})
	t.Run("an entry left by a dead evictor is dropped", func(t *testing.T) {
		died := errors.New("killed")
		th, err := offload(t, func(testHot) func(context.Context) error {
			return func(context.Context) error { return died }
		})
		if !errors.Is(err, died) {
			t.Fatalf("evict: %v, want the removal to fail", err)
		}
		if got := (pendingEnv{th.h, th.epoch}).replayFrom(t); got != 21 {
			t.Fatalf("replay from %d, want 21: an evicted session's entry pins it", got)
		}
	})
}

// A flush that keeps the session moves its pending entry past what it
// flushed, and a snapshot passes over the entry of a session with nothing
// pending: the replay position follows the partition, not the user's first
// event. Events applied after the flush pull it back to just after the
// flushed watermark, and make the session due again.
func TestFlushMovesTheReplayPosition(t *testing.T) {
	ctx := context.Background()
	th := newTestHot(t)
	e := pendingEnv{th.h, th.epoch}
	if err := e.load(ctx, "u", 5); err != nil {
		t.Fatal(err)
	}
	apply := func(offsets ...int64) {
		t.Helper()
		var evs []state.UserEvent
		for _, o := range offsets {
			evs = append(evs, state.UserEvent{Offset: o, Event: state.HistoryEvent{UserID: "u", EventID: "e" + string(rune('a'+o)), ItemID: "i", Context: "c", Type: int32(schemas.Click), EventTimeMs: o}})
		}
		if _, _, _, err := th.h.ApplyUserEvents(ctx, "ev", 0, th.epoch, map[string][]state.UserEvent{"u": evs}, state.SessionLimits{HistoryCap: 10, FlushPending: 4}, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	apply(6, 7, 8, 9)
	if err := th.h.MarkPartitionApplied(ctx, "ev", 0, 20, th.epoch); err != nil {
		t.Fatal(err)
	}
	if got := e.replayFrom(t); got != 5 {
		t.Fatalf("replay from %d before the flush, want 5", got)
	}
	// Five pending passed FlushPending: due now, whatever the age bound.
	if due, err := th.h.DueUsers(ctx, 0, 10); err != nil || len(due) != 1 {
		t.Fatalf("due %v, %v; want u at once", due, err)
	}
	s, ok, err := th.h.ReadSession(ctx, "u")
	if err != nil || !ok || s.PendingEnd-s.PendingStart != 5 {
		t.Fatalf("session %+v, %v, %v", s, ok, err)
	}
	var flushed []state.HistoryEvent
	for from := s.PendingStart; from < s.PendingEnd; {
		evs, next, ok, err := th.h.PendingEvents(ctx, s, from, 2)
		if err != nil || !ok || len(evs) > 2 {
			t.Fatalf("chunk from %d: %d events, %v, %v", from, len(evs), ok, err)
		}
		flushed, from = append(flushed, evs...), next
	}
	if len(flushed) != 5 || flushed[0].EventTimeMs != 1 || flushed[4].EventTimeMs != 9 {
		t.Fatalf("read %d pending events: %+v", len(flushed), flushed)
	}
	readMs := time.Now().UnixMilli()
	if err := th.h.KeepSession(ctx, s, readMs); err != nil {
		t.Fatal(err)
	}
	if got := e.replayFrom(t); got != 21 {
		t.Fatalf("replay from %d after the flush, want 21: a session with nothing pending pins it", got)
	}
	if due, err := th.h.DueUsers(ctx, readMs+60_000, 10); err != nil || len(due) != 0 {
		t.Fatalf("due %v, %v with nothing pending", due, err)
	}
	if ok, err := th.h.SessionsLoaded(ctx, []string{"u"}); err != nil || !ok[0] {
		t.Fatal("the flush evicted the session")
	}
	apply(22)
	if got := e.replayFrom(t); got != 10 {
		t.Fatalf("replay from %d after a new event, want 10 (after the flushed watermark 9)", got)
	}
	if due, err := th.h.DueUsers(ctx, time.Now().UnixMilli(), 10); err != nil || len(due) != 1 {
		t.Fatalf("due %v, %v with an event pending", due, err)
	}
}
