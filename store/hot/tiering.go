package hot

import (
	"context"
	"errors"
	"fmt"
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
		return nil, fmt.Errorf("checking sessions: %w", err)
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
		return "", false, fmt.Errorf("locking session of %s: %w", user, err)
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
	args := []any{token, st.Version, nowMs, epoch, len(recent)}
	for _, e := range recent {
		args = append(args, encodeEvent(e))
	}
	args = append(args, len(st.Watermarks))
	for f, v := range st.Watermarks {
		args = append(args, "w:"+f, v)
	}
	for arm, counts := range st.ArmCounts {
		for ty, n := range counts {
			if n != 0 && ty < state.NumEventTypes {
				args = append(args, arm+"\x1f"+strconv.Itoa(ty), n)
			}
		}
	}
	keys := []string{k.userKey(user, "m"), k.userKey(user, "h"), k.userKey(user, "s"), k.userKey(user, "k")}
	// The script releases the lock it installs under.
	defer h.stopRenewing(token)
	installed, err := installScript.Run(ctx, h.rdb, keys, args...).Int64()
	if err != nil {
		return false, fmt.Errorf("installing session of %s: %w", user, err)
	}
	if installed < 0 {
		return false, fmt.Errorf("installing session of %s: %w", user, state.ErrLockLost)
	}
	return installed == 1, nil
}

// ApplyUserEvents applies each user's events above the user's watermark
// for topic/partition, atomically per user, keeps the newest historyCap in
// the recent history, and records the activity at nowMs. It returns the
// users with no session (load them and apply again) and, among them, those
// whose session was loaded in an epoch other than epoch (drop it first).
func (h *Hot) ApplyUserEvents(ctx context.Context, topic string, partition int, epoch string, byUser map[string][]state.UserEvent, historyCap int, nowMs int64) (notLoaded, stale []string, err error) {
	k := h.keys
	field := "w:" + watermarkField(topic, partition)
	capArg := strconv.Itoa(historyCap)
	pend := k.pendingKey(watermarkField(topic, partition))
	users := make([]string, 0, len(byUser))
	cmds := make([]*redis.Cmd, 0, len(byUser))
	err = h.withScripts(ctx, func() error {
		users, cmds = users[:0], cmds[:0]
		pipe := h.rdb.Pipeline()
		for u, evs := range byUser {
			args := make([]any, 4, 4+3*len(evs))
			args[0], args[1], args[2], args[3] = field, capArg, nowMs, epoch
			for _, e := range evs {
				args = append(args, e.Offset, encodeEvent(e.Event), userArmField(e.Event, int(e.Event.Type)-1))
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
		return nil, nil, fmt.Errorf("applying user events: %w", err)
	}
	// Each session with events applied gets its entry in the partition's
	// pending set, after its events are in (the partition is marked
	// applied only after this returns, so a snapshot meanwhile replays
	// from before them anyway).
	pipe := h.rdb.Pipeline()
	for i, c := range cmds {
		applied, sid := applyResult(c)
		switch {
		case applied == -2:
			stale = append(stale, users[i])
			fallthrough
		case applied < 0:
			notLoaded = append(notLoaded, users[i])
		case applied > 0:
			// The user's oldest event of this partition not yet in the
			// cold tier is at or after this one: a replay from here loses
			// none.
			pipe.ZAddNX(ctx, pend, redis.Z{Score: float64(byUser[users[i]][0].Offset), Member: pendingMember(users[i], sid)})
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("recording pending events: %w", err)
		}
	}
	return notLoaded, stale, nil
}

// DropStaleSession deletes a user's session if it was loaded in an epoch
// other than epoch, without flushing it: everything in it is replayed.
func (h *Hot) DropStaleSession(ctx context.Context, user, epoch string) error {
	if err := dropStaleScript.Run(ctx, h.rdb, h.keys.userKeys(user), epoch).Err(); err != nil {
		return fmt.Errorf("dropping a stale session of %s: %w", user, err)
	}
	return nil
}

// ReadSession reads, atomically, everything an offload of a user needs; ok
// is false when the user has no session.
func (h *Hot) ReadSession(ctx context.Context, user string) (s state.HotSession, ok bool, err error) {
	k := h.keys
	res, err := snapshotScript.Run(ctx, h.rdb, []string{k.userKey(user, "m"), k.userKey(user, "p"), k.userKey(user, "s")}).StringSlice()
	if err != nil {
		return s, false, fmt.Errorf("reading hot state of %s: %w", user, err)
	}
	if len(res) == 0 || res[0] != "1" {
		return s, false, nil
	}
	s, err = parseSession(user, res[1:])
	return s, err == nil, err
}

// EvictSession evicts the session s was read from if nothing changed since
// (same session, version and last activity), and drops the user from the
// pending and activity indexes. Otherwise it drops from the pending list
// the events s holds, as they are in the cold tier now. It reports whether
// the user was evicted.
func (h *Hot) EvictSession(ctx context.Context, s state.HotSession) (bool, error) {
	k, user := h.keys, s.User
	evicted, err := evictScript.Run(ctx, h.rdb, k.userKeys(user), s.SessionID, s.Version, s.SeenMs, s.PendingEnd).Int64()
	if err != nil {
		return false, fmt.Errorf("evicting %s: %w", user, err)
	}
	if evicted != 1 {
		return false, nil
	}
	for field := range s.State.Watermarks {
		if err := h.rdb.ZRem(ctx, k.pendingKey(field), pendingMember(user, s.SessionID)).Err(); err != nil {
			return true, fmt.Errorf("dropping %s from the pending set of %s: %w", user, field, err)
		}
	}
	return true, h.DropActivity(ctx, user, s.SeenMs)
}

// DropActivity removes a user from the activity index if the activity
// recorded there is no later than seenMs.
func (h *Hot) DropActivity(ctx context.Context, user string, seenMs int64) error {
	if err := dropActivityScript.Run(ctx, h.rdb, []string{h.keys.ActivityKey(user)}, user, seenMs).Err(); err != nil {
		return fmt.Errorf("dropping activity of %s: %w", user, err)
	}
	return nil
}

// IdleUsers returns, from each activity shard, up to limit users whose last
// activity is at or before cutoffMs; with the error of any shard it could
// not read, the users of those it could.
func (h *Hot) IdleUsers(ctx context.Context, cutoffMs int64, limit int) ([]string, error) {
	var out []string
	var errs []error
	for n := 0; n < ActivityShards; n++ {
		users, err := h.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: h.keys.activityShardKey(n), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoffMs, 10),
			Offset: 0, Count: int64(limit),
		}).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading activity shard %d: %w", n, err))
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
	s, err := parseSession(user, append([]string{"|", "|"}, flat...))
	return s.State.ArmCounts, err
}

// parseSession reads the reply of the session-read script: the meta hash's
// field/value pairs, '|', the pending events, '|', the user-arm counts.
func parseSession(user string, res []string) (state.HotSession, error) {
	s := state.HotSession{User: user, State: state.UserState{UserID: user, ArmCounts: map[string][]int64{}, Watermarks: map[string]int64{}}}
	part := 0
	var meta, stats []string
	for _, v := range res {
		if v == "|" {
			part++
			continue
		}
		switch part {
		case 0:
			meta = append(meta, v)
		case 1:
			e, err := decodeEvent(user, v)
			if err != nil {
				return s, err
			}
			s.Pending = append(s.Pending, e)
		default:
			stats = append(stats, v)
		}
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
	for i := 0; i+1 < len(stats); i += 2 {
		arm, ty, n, err := parseUserArmField(stats[i], stats[i+1])
		if err != nil {
			return s, fmt.Errorf("user %s: %w", user, err)
		}
		c := s.State.ArmCounts[arm]
		if c == nil {
			c = make([]int64, state.NumEventTypes)
			s.State.ArmCounts[arm] = c
		}
		c[ty] = n
	}
	return s, nil
}

// A partition's pending set holds, per hot session with events of the
// partition not yet in the cold tier, the member user\x1fsession id scored
// by the oldest such offset (or lower). Naming the session keeps an
// evictor's removal to its own session's entry: a session loaded again
// meanwhile has its own.
func pendingMember(user, sid string) string { return user + "\x1f" + sid }

// applyResult reads apply_user.lua's reply: the events applied (or -1, -2)
// and the session id.
func applyResult(c *redis.Cmd) (int64, string) {
	switch v := c.Val().(type) {
	case int64:
		return v, ""
	case []any:
		if len(v) == 2 {
			n, _ := v[0].(int64)
			sid, _ := v[1].(string)
			return n, sid
		}
	}
	return -1, ""
}

// oldestPending returns the lowest score in field's pending set among the
// entries of sessions that still exist, removing on the way the entries of
// sessions gone without removing them (a process killed between an evict
// and its removal, a stale session dropped after a hot-tier loss). A
// session id never comes back, so such an entry is safe to remove.
func (h *Hot) oldestPending(ctx context.Context, field string) (int64, bool, error) {
	key := h.keys.pendingKey(field)
	for {
		zs, err := h.rdb.ZRangeWithScores(ctx, key, 0, 15).Result()
		if err != nil || len(zs) == 0 {
			return 0, false, err
		}
		for _, z := range zs {
			m, _ := z.Member.(string)
			if i := strings.LastIndexByte(m, '\x1f'); i > 0 {
				vals, err := h.rdb.HMGet(ctx, h.keys.userKey(m[:i], "m"), "l", "sid").Result()
				if err != nil {
					return 0, false, err
				}
				if l, _ := vals[0].(string); l == "1" {
					if sid, _ := vals[1].(string); sid == m[i+1:] {
						return int64(z.Score), true, nil
					}
				}
			}
			if err := h.rdb.ZRem(ctx, key, m).Err(); err != nil {
				return 0, false, err
			}
		}
	}
}
