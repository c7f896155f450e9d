package hot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/banditstream/banditstream/store/state"
	"github.com/redis/go-redis/v9"
)

// The session operations the tiering (package store) is written over: each
// is one round trip or one script, and none decides anything the tiering
// does not ask for.

// Shards returns the number of arm shards.
func (h *Hot) Shards() int { return h.keys.Shards }

// Epoch returns the hot tier's current epoch, "" when it has lost its state
// and is not recovered yet (see Recover).
func (h *Hot) Epoch(ctx context.Context) (string, error) { return h.currentEpoch(ctx) }

// SessionsLoaded reports which users have a session in the hot tier.
func (h *Hot) SessionsLoaded(ctx context.Context, users []string) ([]bool, error) {
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGet(ctx, h.keys.userKey(u, "m"), "l")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, refused(fmt.Errorf("checking sessions: %w", err))
	}
	out := make([]bool, len(users))
	for i, c := range cmds {
		out[i] = c.Val() == "1"
	}
	return out, nil
}

// LockSession takes the session-load lock of a user, a lease of ttl renewed
// every ttl/3 until UnlockSession or InstallSession: a loader that dies
// holds the user up for ttl at most, and one that stalls longer loses the
// lock, and with it the right to install (InstallSession is fenced by it).
// ok is false when another loader holds it.
func (h *Hot) LockSession(ctx context.Context, user string, ttl time.Duration) (token string, ok bool, err error) {
	l, ok, err := acquireLease(ctx, h.rdb, h.keys.userKey(user, "k"), ttl)
	if err != nil {
		return "", false, refused(fmt.Errorf("locking session of %s: %w", user, err))
	}
	if !ok {
		return "", false, nil
	}
	h.loads.Store(l.token, l)
	return l.token, true, nil
}

// UnlockSession releases a session-load lock that token holds.
func (h *Hot) UnlockSession(ctx context.Context, user, token string) error {
	h.stopRenewing(token)
	return releaseScript.Run(ctx, h.rdb, []string{h.keys.userKey(user, "k")}, token).Err()
}

// stopRenewing ends the renewals of the session-load lock token holds.
func (h *Hot) stopRenewing(token string) {
	if l, ok := h.loads.LoadAndDelete(token); ok {
		l.(*lease).abandon()
	}
}

// InstallSession installs a user's session from its cold state and recent
// history (newest first), tagged with epoch, unless one is installed
// already, and releases the load lock token holds. It reports whether it
// installed one, and state.ErrLockLost if token no longer holds the lock:
// the install is fenced by the lock, so a loader that stalled past its TTL
// cannot install what it read before another loader's session.
func (h *Hot) InstallSession(ctx context.Context, token, epoch string, st state.UserState, recent []state.HistoryEvent, nowMs int64) (bool, error) {
	k, user := h.keys, st.UserID
	args := []any{token, st.Version, nowMs, epoch, st.Dedup, len(recent)}
	for _, e := range recent {
		args = append(args, encodeEvent(e))
	}
	args = append(args, len(st.Watermarks))
	for f, v := range st.Watermarks {
		args = append(args, "w:"+f, v)
	}
	for arm, counts := range st.ArmCounts {
		args = appendUserArmFields(args, arm, counts)
	}
	keys := []string{k.userKey(user, "m"), k.userKey(user, "h"), k.userKey(user, "s"), k.userKey(user, "k"), k.userKey(user, "d")}
	// The script releases the lock it installs under.
	defer h.stopRenewing(token)
	installed, err := installScript.Run(ctx, h.rdb, keys, args...).Int64()
	if err != nil {
		return false, refused(fmt.Errorf("installing session of %s: %w", user, err))
	}
	if installed < 0 {
		return false, fmt.Errorf("installing session of %s: %w", user, state.ErrLockLost)
	}
	return installed == 1, nil
}

// ApplyUserEvents applies each user's events above the user's watermark
// for topic/partition, atomically per user, keeps the newest
// limits.HistoryCap in the recent history, adds to the user's own counts
// up to limits.UserCounts of them (past it, only to counts the user has),
// and records the activity at
// nowMs. A session with events pending gets an entry in the flush index
// (DueUsers), due at once when limits.FlushPending or more are pending. It
// returns the users with no session (load them and apply again) and, among
// them, those whose session was loaded in an epoch other than epoch (drop
// it first).
func (h *Hot) ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]state.UserEvent, limits state.SessionLimits, nowMs int64) (notLoaded, stale []string, dups []int64, err error) {
	k := h.keys
	field := "w:" + watermarkField(topic, partition)
	capArg, countsArg, windowArg := strconv.Itoa(limits.HistoryCap), strconv.Itoa(limits.UserCounts), strconv.Itoa(limits.DedupWindow)
	halfLifeArg := strconv.FormatInt(h.Decay().HalfLifeMs(), 10)
	pend := k.pendingKey(watermarkField(topic, partition))
	position := fnv64(watermarkField(topic, partition) + "/")
	users := make([]string, 0, len(byUser))
	cmds := make([]*redis.Cmd, 0, len(byUser))
	err = h.withScripts(ctx, func() error {
		users, cmds = users[:0], cmds[:0]
		pipe := h.rdb.Pipeline()
		for u, evs := range byUser {
			args := make([]any, 7, 7+5*len(evs))
			args[0], args[1], args[2], args[3], args[4], args[5], args[6] = field, capArg, nowMs, epoch, countsArg, windowArg, halfLifeArg
			for _, e := range evs {
				args = append(args, e.Offset, encodeEvent(e.Event), userArmField(e.Event, int(e.Event.Type)-1),
					dedupRecord(position, e.Offset, e.Event.EventID), e.Event.EventTimeMs)
			}
			users = append(users, u)
			cmds = append(cmds, applyUserScript.Run(ctx, pipe, k.userKeys(u), args...))
		}
		for u := range byUser {
			pipe.ZAddGT(ctx, k.ActivityKey(u), redis.Z{Score: float64(nowMs), Member: u})
		}
		_, err := pipe.Exec(ctx)
		return err
	}, applyUserScript)
	if err != nil {
		return nil, nil, nil, refused(fmt.Errorf("applying user events: %w", err))
	}
	// Each session with events applied gets its entry in the partition's
	// pending set, after its events are in (the partition is marked
	// applied only after this returns, so a snapshot meanwhile replays
	// from before them anyway).
	pipe := h.rdb.Pipeline()
	for i, c := range cmds {
		applied, sid, pending, dup := applyResult(c)
		dups = append(dups, dup...)
		switch {
		case applied == -2:
			stale = append(stale, users[i])
			fallthrough
		case applied < 0:
			notLoaded = append(notLoaded, users[i])
		case pending > 0:
			// The user's oldest event of this partition not yet in the
			// cold tier is at or after this one: a replay from here loses
			// none. Added also when nothing was applied: a batch retried
			// after this pipeline failed (a full Redis refuses ZADD) finds
			// its events applied, and must still leave them an entry.
			pipe.ZAddNX(ctx, pend, redis.Z{Score: float64(byUser[users[i]][0].Offset), Member: pendingMember(users[i], sid)})
			due := float64(nowMs)
			if limits.FlushPending > 0 && pending >= int64(limits.FlushPending) {
				due = 0
			}
			// LT: an entry already there keeps its older time.
			pipe.ZAddLT(ctx, k.dueKey(users[i]), redis.Z{Score: due, Member: users[i]})
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, nil, nil, refused(fmt.Errorf("recording pending events: %w", err))
		}
	}
	return notLoaded, stale, dups, nil
}

// DropStaleSession deletes a user's session if it was loaded in an epoch
// other than epoch, without flushing it: everything in it is replayed.
func (h *Hot) DropStaleSession(ctx context.Context, user, epoch string) error {
	if err := dropStaleScript.Run(ctx, h.rdb, h.keys.userKeys(user), epoch).Err(); err != nil {
		return fmt.Errorf("dropping a stale session of %s: %w", user, err)
	}
	return nil
}

// ReadSession reads, atomically, the state an offload of a user writes and
// the sequence numbers of its pending events (read them with
// PendingEvents); ok is false when the user has no session.
func (h *Hot) ReadSession(ctx context.Context, user string) (s state.HotSession, ok bool, err error) {
	k := h.keys
	res, err := snapshotScript.Run(ctx, h.rdb, []string{k.userKey(user, "m"), k.userKey(user, "s"), k.userKey(user, "d")}).StringSlice()
	if err != nil {
		return s, false, fmt.Errorf("reading hot state of %s: %w", user, err)
	}
	if len(res) < 2 || res[0] != "1" {
		return s, false, nil
	}
	s, err = parseSession(user, res[2:])
	if res[1] != "" {
		s.State.Dedup = []byte(res[1])
	}
	return s, err == nil, err
}

// PendingEvents returns the pending events of s numbered from up to at
// most n further (and before s.PendingEnd), oldest first, and the number to
// read next; the events already dropped from the list (another offload
// flushed them) are skipped. ok is false when the session s was read from
// is gone (evicted: its events are in the cold tier).
func (h *Hot) PendingEvents(ctx context.Context, s state.HotSession, from int64, n int) (evs []state.HistoryEvent, next int64, ok bool, err error) {
	to := min(from+int64(n), s.PendingEnd)
	vals, err := pendingChunkScript.Run(ctx, h.rdb, []string{h.keys.userKey(s.User, "m"), h.keys.userKey(s.User, "p")}, s.SessionID, from, to).StringSlice()
	if errors.Is(err, redis.Nil) {
		return nil, to, false, nil
	}
	if err != nil {
		return nil, from, false, fmt.Errorf("reading pending events of %s: %w", s.User, err)
	}
	evs = make([]state.HistoryEvent, len(vals))
	for i, v := range vals {
		if evs[i], err = decodeEvent(s.User, v); err != nil {
			return nil, from, false, err
		}
	}
	return evs, to, true, nil
}

// EvictSession evicts the session s was read from if nothing changed since
// (same session, version and last activity), and drops the user from the
// pending, activity and flush indexes. Otherwise it drops from the pending
// list the events s holds, as they are in the cold tier now (see
// KeepSession). It reports whether the user was evicted.
func (h *Hot) EvictSession(ctx context.Context, s state.HotSession) (bool, error) {
	k, user := h.keys, s.User
	res, err := h.finishOffload(ctx, s, false)
	if err != nil || res == nil || res[0] != 1 {
		if err == nil && res != nil && res[0] == 0 {
			err = h.afterFlush(ctx, s, res[1], s.SeenMs)
		}
		return false, err
	}
	for field := range s.State.Watermarks {
		if err := h.rdb.ZRem(ctx, k.pendingKey(field), pendingMember(user, s.SessionID)).Err(); err != nil {
			return true, fmt.Errorf("dropping %s from the pending set of %s: %w", user, field, err)
		}
	}
	return true, h.DropActivity(ctx, user, s.SeenMs)
}

// KeepSession ends a flush that keeps the session: it drops from the
// pending list the events s holds, as they are in the cold tier now, moves
// the session's entries in the pending sets past what s read (a snapshot's
// replay then starts after them), and leaves the session in the flush
// index only if events arrived since readMs, when s was read.
func (h *Hot) KeepSession(ctx context.Context, s state.HotSession, readMs int64) error {
	res, err := h.finishOffload(ctx, s, true)
	if err != nil || res == nil || res[0] != 0 {
		return err
	}
	return h.afterFlush(ctx, s, res[1], readMs)
}

// finishOffload runs the evict script: nil when the session is another.
func (h *Hot) finishOffload(ctx context.Context, s state.HotSession, keep bool) ([]int64, error) {
	keepArg := "0"
	if keep {
		keepArg = "1"
	}
	res, err := evictScript.Run(ctx, h.rdb, h.keys.userKeys(s.User), s.SessionID, s.Version, s.SeenMs, s.PendingEnd, keepArg).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("finishing the offload of %s: %w", s.User, err)
	}
	if len(res) != 2 || res[0] < 0 {
		return nil, nil
	}
	return res, nil
}

// afterFlush moves a kept session's pending entries past what s read: every
// event applied since has an offset above the watermark s read, so a replay
// from watermark + 1 misses none (GT: never backwards; XX: an entry an
// eviction removed stays removed). The flush-index entry goes when nothing
// is pending, or is re-timed to readMs, before which the events left did
// not arrive.
func (h *Hot) afterFlush(ctx context.Context, s state.HotSession, left, readMs int64) error {
	k, user := h.keys, s.User
	pipe := h.rdb.Pipeline()
	for field, wm := range s.State.Watermarks {
		pipe.ZAddArgs(ctx, k.pendingKey(field), redis.ZAddArgs{XX: true, GT: true, Members: []redis.Z{{Score: float64(wm + 1), Member: pendingMember(user, s.SessionID)}}})
	}
	if left > 0 {
		pipe.ZAddXX(ctx, k.dueKey(user), redis.Z{Score: float64(readMs), Member: user})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("recording the flush of %s: %w", user, err)
	}
	if left > 0 {
		return nil
	}
	return h.forgetDue(ctx, user)
}

// forgetDue removes a user from the flush index, then looks again: events
// applied meanwhile (their ZADD may have come before the removal) put the
// entry back. Whatever the interleaving, a session with pending events
// keeps an entry.
func (h *Hot) forgetDue(ctx context.Context, user string) error {
	due := h.keys.dueKey(user)
	if err := h.rdb.ZRem(ctx, due, user).Err(); err != nil {
		return fmt.Errorf("dropping %s from the flush index: %w", user, err)
	}
	pending, err := h.pendingCount(ctx, user)
	if err != nil || pending == 0 {
		return err
	}
	return h.rdb.ZAddLT(ctx, due, redis.Z{Score: float64(time.Now().UnixMilli()), Member: user}).Err()
}

// pendingCount returns how many events of user's session are not yet in
// the cold tier (0 without a session).
func (h *Hot) pendingCount(ctx context.Context, user string) (int64, error) {
	vals, err := h.rdb.HMGet(ctx, h.keys.userKey(user, "m"), "l", "ps", "pe").Result()
	if err != nil {
		return 0, fmt.Errorf("reading the pending events of %s: %w", user, err)
	}
	if l, _ := vals[0].(string); l != "1" {
		return 0, nil
	}
	ps, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
	pe, _ := strconv.ParseInt(fmt.Sprint(vals[2]), 10, 64)
	return pe - ps, nil
}

// DropActivity removes a user found not hot from the activity index if the
// activity recorded there is no later than seenMs, and from the flush index
// unless a session loaded since has events pending.
func (h *Hot) DropActivity(ctx context.Context, user string, seenMs int64) error {
	if err := dropActivityScript.Run(ctx, h.rdb, []string{h.keys.ActivityKey(user)}, user, seenMs).Err(); err != nil {
		return fmt.Errorf("dropping activity of %s: %w", user, err)
	}
	return h.forgetDue(ctx, user)
}

// IdleUsers returns, from each activity shard, up to limit users whose last
// activity is at or before cutoffMs; with the error of any shard it could
// not read, the users of those it could.
func (h *Hot) IdleUsers(ctx context.Context, cutoffMs int64, limit int) ([]string, error) {
	return h.byScore(ctx, h.keys.activityShardKey, "activity", cutoffMs, limit)
}

// DueUsers returns, from each flush-index shard, up to limit users whose
// oldest pending event arrived at or before cutoffMs, or who have more
// pending than the bound their events were applied with.
func (h *Hot) DueUsers(ctx context.Context, cutoffMs int64, limit int) ([]string, error) {
	return h.byScore(ctx, h.keys.dueShardKey, "flush", cutoffMs, limit)
}

func (h *Hot) byScore(ctx context.Context, shardKey func(int) string, index string, cutoffMs int64, limit int) ([]string, error) {
	var out []string
	var errs []error
	for n := 0; n < ActivityShards; n++ {
		users, err := h.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: shardKey(n), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoffMs, 10),
			Offset: 0, Count: int64(limit),
		}).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s shard %d: %w", index, n, err))
			continue
		}
		out = append(out, users...)
	}
	return out, errors.Join(errs...)
}

// LockSnapshot takes the snapshot lease, renewed until release; ok is
// false when another snapshot is running.
func (h *Hot) LockSnapshot(ctx context.Context) (release func(), ok bool, err error) {
	l, ok, err := acquireLease(ctx, h.rdb, h.keys.Prefix+":snapshot-lock", LeaseTTL)
	if err != nil || !ok {
		return nil, false, err
	}
	return func() { l.release(ctx) }, true, nil
}

// ReplayPositions returns, for every partition ever applied in epoch,
// where a replay after restoring the shards as they are now must start:
// after the last offset applied to every shard, and not after the oldest
// event of a hot user not yet in the cold tier. Read it before the shards:
// they then hold at least this much.
func (h *Hot) ReplayPositions(ctx context.Context, epoch string) (map[string]int64, error) {
	parts, err := h.rdb.SMembers(ctx, h.keys.Prefix+":parts").Result()
	if err != nil {
		return nil, err
	}
	replay := map[string]int64{}
	for _, field := range parts {
		topic, pstr, _ := strings.Cut(field, "/")
		partition, _ := strconv.Atoi(pstr)
		from := int64(0)
		if o, ok, err := h.PartitionApplied(ctx, topic, partition, epoch); err != nil {
			return nil, err
		} else if ok {
			from = o + 1
		}
		oldest, ok, err := h.oldestPending(ctx, field)
		if err != nil {
			return nil, err
		}
		if ok && oldest < from {
			from = oldest
		}
		replay[field] = from
	}
	return replay, nil
}

// UserHistory returns a hot user's recent history, newest first, each
// event once: an event a producer wrote to the topic twice (a retried
// send) is in the hot list twice but, as in the cold tier's history, one
// event by (time, event id).
func (h *Hot) UserHistory(ctx context.Context, user string) ([]state.HistoryEvent, error) {
	vals, err := h.rdb.LRange(ctx, h.keys.userKey(user, "h"), 0, -1).Result()
	if err != nil {
		return nil, err
	}
	type key struct {
		ms int64
		id string
	}
	out, seen := make([]state.HistoryEvent, 0, len(vals)), make(map[key]bool, len(vals))
	for _, v := range vals {
		e, err := decodeEvent(user, v)
		if err != nil {
			return nil, err
		}
		if k := (key{e.EventTimeMs, e.EventID}); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out, nil
}

// UserArmCounts returns a hot user's own counts per arm ("context\x1fitem").
func (h *Hot) UserArmCounts(ctx context.Context, user string) (map[string][]int64, error) {
	vals, err := h.rdb.HGetAll(ctx, h.keys.userKey(user, "s")).Result()
	if err != nil {
		return nil, err
	}
	flat := make([]string, 0, 2*len(vals))
	for f, v := range vals {
		flat = append(flat, f, v)
	}
	s, err := parseSession(user, append([]string{"|"}, flat...))
	return s.State.ArmCounts, err
}

// parseSession reads the reply of the session-read script: the meta hash's
// field/value pairs, '|', the user-arm counts.
func parseSession(user string, res []string) (state.HotSession, error) {
	s := state.HotSession{User: user, State: state.UserState{UserID: user, ArmCounts: map[string][]int64{}, Watermarks: map[string]int64{}}}
	meta, stats := res, []string(nil)
	if i := slices.Index(res, "|"); i >= 0 {
		meta, stats = res[:i], res[i+1:]
	}
	number := func(f, v string) (int64, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("store: session field %s of %s is %q", f, user, v)
		}
		return n, nil
	}
	var err error
	for i := 0; i+1 < len(meta) && err == nil; i += 2 {
		f, v := meta[i], meta[i+1]
		switch {
		case f == "v":
			s.Version, err = number(f, v)
			s.State.Version = s.Version
		case f == "seen":
			s.SeenMs, err = number(f, v)
		case f == "ps":
			s.PendingStart, err = number(f, v)
		case f == "pe":
			s.PendingEnd, err = number(f, v)
		case f == "sid":
			s.SessionID = v
		case f == "ep":
			s.Epoch = v
		case strings.HasPrefix(f, "w:"):
			s.State.Watermarks[f[2:]], err = number(f, v)
		}
	}
	if err != nil {
		return s, err
	}
	arms, err := parseUserArmFields(stats)
	if err != nil {
		return s, fmt.Errorf("user %s: %w", user, err)
	}
	for arm, c := range arms {
		s.State.ArmCounts[arm] = encodeUserCounts(c)
	}
	return s, nil
}

// A partition's pending set holds, per hot session with events of the
// partition not yet in the cold tier, the member user\x1fsession id scored
// by the oldest such offset (or lower). Naming the session keeps an
// evictor's removal to its own session's entry: a session loaded again
// meanwhile has its own.
func pendingMember(user, sid string) string { return user + "\x1f" + sid }

// applyResult reads apply_user.lua's reply: the events applied (or -1,
// -2), the session id, the events pending and the offsets decided
// duplicates.
func applyResult(c *redis.Cmd) (applied int64, sid string, pending int64, dups []int64) {
	switch v := c.Val().(type) {
	case int64:
		return v, "", 0, nil
	case []any:
		if len(v) == 4 {
			applied, _ = v[0].(int64)
			sid, _ = v[1].(string)
			pending, _ = v[2].(int64)
			offs, _ := v[3].([]any)
			for _, o := range offs {
				if n, ok := o.(int64); ok {
					dups = append(dups, n)
				}
			}
			return applied, sid, pending, dups
		}
	}
	return -1, "", 0, nil
}

// oldestPending returns the lowest score in field's pending set among the
// entries of sessions that still exist and have events pending. It removes
// on the way the entries of sessions gone without removing them (a process
// killed between an evict and its removal, a stale session dropped after a
// hot-tier loss): a session id never comes back, so such an entry is safe
// to remove. An entry of a session with nothing pending is passed over but
// kept: ReplayPositions reads the partition's applied offset first, so an
// event applied after this look is above it, and one applied before it is
// pending or in the cold tier already.
func (h *Hot) oldestPending(ctx context.Context, field string) (int64, bool, error) {
	const page = 128
	key := h.keys.pendingKey(field)
	for start := int64(0); ; start += page {
		zs, err := h.rdb.ZRangeWithScores(ctx, key, start, start+page-1).Result()
		if err != nil || len(zs) == 0 {
			return 0, false, err
		}
		pipe := h.rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, len(zs))
		for i, z := range zs {
			m, _ := z.Member.(string)
			user, _ := splitPendingMember(m)
			cmds[i] = pipe.HMGet(ctx, h.keys.userKey(user, "m"), "l", "sid", "ps", "pe")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, false, err
		}
		var gone []any
		for i, z := range zs {
			m, _ := z.Member.(string)
			_, sid := splitPendingMember(m)
			vals := cmds[i].Val()
			if l, _ := vals[0].(string); l != "1" || vals[1] != sid || sid == "" {
				gone = append(gone, m)
				continue
			}
			if vals[2] != vals[3] { // ps != pe: events pending
				return int64(z.Score), true, nil
			}
		}
		if len(gone) > 0 {
			if err := h.rdb.ZRem(ctx, key, gone...).Err(); err != nil {
				return 0, false, err
			}
			start -= int64(len(gone))
		}
	}
}

// splitPendingMember reads a pending-set member made by pendingMember.
func splitPendingMember(m string) (user, sid string) {
	i := strings.LastIndexByte(m, '\x1f')
	if i <= 0 {
		return m, ""
	}
	return m[:i], m[i+1:]
}
