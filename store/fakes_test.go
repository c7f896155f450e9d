package store_test

import (
	"context"
	"errors"
	"maps"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/banditstream/banditstream/store"
	"github.com/banditstream/banditstream/store/state"
)

// In-memory hot and cold tiers for the tiering's unit tests: each step is
// atomic under one mutex, as each is one script or pipeline on Redis.

type fakeSession struct {
	epoch, sid string
	version    int64
	seen       int64
	ps, pe     int64
	pending    []state.HistoryEvent // events ps up to pe
	st         state.UserState
}

type fakeHot struct {
	mu       sync.Mutex
	shards   int
	epoch    string
	sessions map[string]*fakeSession
	locks    map[string]string
	activity map[string]int64
	due      map[string]int64
	arms     map[int]state.ShardSnapshot
	parts    map[string]int64
	// otherLoader, when > 0, holds each session lock for that many lock
	// attempts and then installs the session itself.
	otherLoader  int
	snapshotBusy bool
	epochChanges bool // the epoch changes right after a ReadSession
	evictRefuses bool // an event lands between read and evict
	recoveries   int
	touched      int
	chunkReads   int
	// lockExpires makes the next installs find their load lock expired.
	lockExpires int
}

var _ store.HotTier = (*fakeHot)(nil)

func newFakeHot(shards int) *fakeHot {
	return &fakeHot{shards: shards, epoch: "e1", sessions: map[string]*fakeSession{}, locks: map[string]string{},
		activity: map[string]int64{}, due: map[string]int64{}, arms: map[int]state.ShardSnapshot{}, parts: map[string]int64{}}
}

func (h *fakeHot) Shards() int { return h.shards }

func (h *fakeHot) Epoch(context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.epoch, nil
}

func (h *fakeHot) SessionsLoaded(_ context.Context, users []string) ([]bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]bool, len(users))
	for i, u := range users {
		_, out[i] = h.sessions[u]
	}
	return out, nil
}

func (h *fakeHot) LockSession(_ context.Context, user string, _ time.Duration) (string, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.otherLoader > 0 {
		h.otherLoader--
		if h.otherLoader == 0 {
			h.sessions[user] = &fakeSession{epoch: h.epoch, sid: "other"}
		}
		return "", false, nil
	}
	if _, held := h.locks[user]; held {
		return "", false, nil
	}
	token := "t-" + user
	h.locks[user] = token
	return token, true, nil
}

func (h *fakeHot) UnlockSession(_ context.Context, user, token string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.locks[user] == token {
		delete(h.locks, user)
	}
	return nil
}

func (h *fakeHot) InstallSession(_ context.Context, token, epoch string, st state.UserState, recent []state.HistoryEvent, nowMs int64) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	user := st.UserID
	if h.lockExpires > 0 {
		h.lockExpires--
		delete(h.locks, user)
	}
	if h.locks[user] != token {
		return false, state.ErrLockLost
	}
	installed := false
	if _, ok := h.sessions[user]; !ok {
		st.ArmCounts = maps.Clone(st.ArmCounts)
		if st.ArmCounts == nil {
			st.ArmCounts = map[string][]int64{}
		}
		st.Watermarks = maps.Clone(st.Watermarks)
		if st.Watermarks == nil {
			st.Watermarks = map[string]int64{}
		}
		h.sessions[user] = &fakeSession{epoch: epoch, sid: token, version: st.Version, seen: nowMs, st: st}
		installed = true
	}
	if h.locks[user] == token {
		delete(h.locks, user)
	}
	return installed, nil
}

func (h *fakeHot) ApplyUserEvents(_ context.Context, topic string, partition int, epoch string, byUser map[string][]state.UserEvent, limits state.SessionLimits, nowMs int64) ([]string, []string, []int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	field := topic + "/" + strconv.Itoa(partition)
	var notLoaded, stale []string
	for u, evs := range byUser {
		s, ok := h.sessions[u]
		if !ok {
			notLoaded = append(notLoaded, u)
			continue
		}
		if s.epoch != epoch {
			stale = append(stale, u)
			notLoaded = append(notLoaded, u)
			continue
		}
		wm, ok := s.st.Watermarks[field]
		if !ok {
			wm = -1
		}
		for _, e := range evs {
			if e.Offset <= wm {
				continue
			}
			arm := e.Event.Context + "\x1f" + e.Event.ItemID
			if s.st.ArmCounts[arm] == nil {
				s.st.ArmCounts[arm] = make([]int64, state.NumEventTypes)
			}
			s.st.ArmCounts[arm][e.Event.Type-1]++
			s.pending = append(s.pending, e.Event)
			s.pe++
			s.version++
			wm = e.Offset
		}
		s.st.Watermarks[field] = wm
		s.seen = nowMs
		h.activity[u] = nowMs
		if s.pe > s.ps {
			due := nowMs
			if limits.FlushPending > 0 && s.pe-s.ps >= int64(limits.FlushPending) {
				due = 0
			}
			if d, ok := h.due[u]; !ok || due < d {
				h.due[u] = due
			}
		}
	}
	return notLoaded, stale, nil, nil
}

func (h *fakeHot) DropStaleSession(_ context.Context, user, epoch string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.sessions[user]; ok && s.epoch != epoch {
		delete(h.sessions, user)
	}
	return nil
}

func (h *fakeHot) TouchSessions(_ context.Context, users []string, nowMs int64) ([]state.SessionStats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]state.SessionStats, len(users))
	for i, u := range users {
		h.activity[u] = max(h.activity[u], nowMs)
		h.touched++
		if s, ok := h.sessions[u]; ok {
			s.seen = nowMs
			out[i].Loaded = true
		}
	}
	return out, nil
}

func (h *fakeHot) ReadSession(_ context.Context, user string) (state.HotSession, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[user]
	if !ok {
		return state.HotSession{}, false, nil
	}
	st := s.st
	st.ArmCounts, st.Watermarks = maps.Clone(st.ArmCounts), maps.Clone(st.Watermarks)
	st.Version = s.version
	out := state.HotSession{User: user, Epoch: s.epoch, SessionID: s.sid, Version: s.version, SeenMs: s.seen,
		PendingStart: s.ps, PendingEnd: s.pe, State: st}
	if h.epochChanges {
		h.epoch = "changed"
	}
	return out, true, nil
}

func (h *fakeHot) PendingEvents(_ context.Context, hs state.HotSession, from int64, n int) ([]state.HistoryEvent, int64, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.chunkReads++
	s, ok := h.sessions[hs.User]
	to := min(from+int64(n), hs.PendingEnd)
	if !ok || s.sid != hs.SessionID {
		return nil, to, false, nil
	}
	from = max(from, s.ps)
	if to <= from {
		return nil, to, true, nil
	}
	return append([]state.HistoryEvent(nil), s.pending[from-s.ps:to-s.ps]...), to, true, nil
}

// trim drops the events before pe from a session's pending list.
func (s *fakeSession) trim(pe int64) {
	if k := pe - s.ps; k > 0 {
		s.pending = s.pending[k:]
		s.ps = pe
	}
}

func (h *fakeHot) EvictSession(_ context.Context, hs state.HotSession) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[hs.User]
	if !ok || s.sid != hs.SessionID {
		return false, nil
	}
	if h.evictRefuses || s.version != hs.Version || s.seen != hs.SeenMs {
		s.trim(hs.PendingEnd)
		return false, nil
	}
	delete(h.sessions, hs.User)
	delete(h.due, hs.User)
	if h.activity[hs.User] <= hs.SeenMs {
		delete(h.activity, hs.User)
	}
	return true, nil
}

func (h *fakeHot) KeepSession(_ context.Context, hs state.HotSession, readMs int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[hs.User]
	if !ok || s.sid != hs.SessionID {
		return nil
	}
	s.trim(hs.PendingEnd)
	if s.pe > s.ps {
		h.due[hs.User] = readMs
	} else {
		delete(h.due, hs.User)
	}
	return nil
}

func (h *fakeHot) DropActivity(_ context.Context, user string, seenMs int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.activity[user]; ok && a <= seenMs {
		delete(h.activity, user)
	}
	if _, hot := h.sessions[user]; !hot {
		delete(h.due, user)
	}
	return nil
}

func (h *fakeHot) IdleUsers(_ context.Context, cutoffMs int64, limit int) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return upTo(h.activity, cutoffMs, limit), nil
}

func (h *fakeHot) DueUsers(_ context.Context, cutoffMs int64, limit int) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return upTo(h.due, cutoffMs, limit), nil
}

// upTo returns, sorted, up to limit users of index scored at or before
// cutoff.
func upTo(index map[string]int64, cutoff int64, limit int) []string {
	var out []string
	for u, a := range index {
		if a <= cutoff {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out[:min(len(out), limit)]
}

func (h *fakeHot) LockSnapshot(context.Context) (func(), bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snapshotBusy {
		return nil, false, nil
	}
	h.snapshotBusy = true
	return func() {
		h.mu.Lock()
		h.snapshotBusy = false
		h.mu.Unlock()
	}, true, nil
}

func (h *fakeHot) ReplayPositions(context.Context, string) (map[string]int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int64{}
	for f, o := range h.parts {
		out[f] = o + 1
	}
	return out, nil
}

func (h *fakeHot) SnapshotShard(_ context.Context, shard int, epoch string) (state.ShardSnapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if epoch != h.epoch {
		return state.ShardSnapshot{}, errors.New("epoch changed")
	}
	sh, ok := h.arms[shard]
	if !ok {
		sh = state.ShardSnapshot{Shard: shard, Watermarks: map[string]int64{}, Arms: map[string][]int64{}}
	}
	return sh, nil
}

func (h *fakeHot) RecoverWith(_ context.Context, seen string, restore func(epoch string) error) (string, error) {
	h.mu.Lock()
	cur := h.epoch
	h.mu.Unlock()
	if cur != "" && cur != seen {
		return cur, nil
	}
	h.recoveries++
	epoch := "r" + strconv.Itoa(h.recoveries)
	if restore != nil {
		if err := restore(epoch); err != nil {
			return "", err
		}
	}
	h.mu.Lock()
	h.epoch = epoch
	h.mu.Unlock()
	return epoch, nil
}

func (h *fakeHot) RestoreShard(_ context.Context, sh state.ShardSnapshot, _ string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.arms[sh.Shard] = sh
	return nil
}

func (h *fakeHot) MarkPartitionApplied(_ context.Context, topic string, partition int, last int64, _ string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.parts[topic+"/"+strconv.Itoa(partition)] = last
	return nil
}

// fakeCold keeps users' states, histories and snapshots in memory.
type fakeCold struct {
	mu        sync.Mutex
	states    map[string]state.UserState
	history   map[string]map[string]state.HistoryEvent // user → event id
	snapshots []state.Snapshot
	shards    map[int64]map[int]state.ShardSnapshot
	readErr   error
	writeErr  error
	writes    int
	lastID    int64
}

var _ store.ColdTier = (*fakeCold)(nil)

func newFakeCold() *fakeCold {
	return &fakeCold{states: map[string]state.UserState{}, history: map[string]map[string]state.HistoryEvent{}, shards: map[int64]map[int]state.ShardSnapshot{}}
}

func (c *fakeCold) ReadUserState(_ context.Context, user string) (state.UserState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr != nil {
		return state.UserState{}, c.readErr
	}
	st, ok := c.states[user]
	if !ok {
		return state.UserState{}, state.ErrNotFound
	}
	return st, nil
}

func (c *fakeCold) RecentHistory(_ context.Context, user string, limit int) ([]state.HistoryEvent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []state.HistoryEvent
	for _, e := range c.history[user] {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EventTimeMs > out[j].EventTimeMs })
	return out[:min(len(out), limit)], nil
}

func (c *fakeCold) WriteHistory(_ context.Context, events []state.HistoryEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	c.writes++
	for _, e := range events {
		if c.history[e.UserID] == nil {
			c.history[e.UserID] = map[string]state.HistoryEvent{}
		}
		c.history[e.UserID][e.EventID] = e
	}
	return nil
}

func (c *fakeCold) WriteUserState(_ context.Context, st state.UserState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	if old, ok := c.states[st.UserID]; !ok || old.Version <= st.Version {
		c.states[st.UserID] = st
	}
	return nil
}

func (c *fakeCold) WriteShardSnapshot(_ context.Context, id int64, sh state.ShardSnapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shards[id] == nil {
		c.shards[id] = map[int]state.ShardSnapshot{}
	}
	c.shards[id][sh.Shard] = sh
	return nil
}

func (c *fakeCold) CompleteSnapshot(_ context.Context, s state.Snapshot) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshots = append(c.snapshots, s)
	return nil
}

func (c *fakeCold) PruneSnapshots(_ context.Context, keep int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := max(len(c.snapshots)-keep, 0)
	for _, s := range c.snapshots[:n] {
		delete(c.shards, s.ID)
	}
	c.snapshots = append([]state.Snapshot(nil), c.snapshots[n:]...)
	return n, nil
}

func (c *fakeCold) NextSnapshotID(context.Context) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastID++
	return c.lastID, nil
}

func (c *fakeCold) LatestSnapshot(context.Context) (state.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.snapshots) == 0 {
		return state.Snapshot{}, state.ErrNotFound
	}
	return c.snapshots[len(c.snapshots)-1], nil
}

func (c *fakeCold) ReadShardSnapshot(_ context.Context, id int64, shard int) (state.ShardSnapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sh, ok := c.shards[id][shard]
	if !ok {
		return state.ShardSnapshot{}, state.ErrNotFound
	}
	return sh, nil
}

// clock is a settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.UnixMilli(1_767_225_600_000)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// snapshotCount is len(c.snapshots), for tests reading while a sweeper runs.
func (c *fakeCold) snapshotCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.snapshots)
}

// isHot reports whether user has a session, for tests reading while a
// sweeper runs.
func (h *fakeHot) isHot(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.sessions[user]
	return ok
}
