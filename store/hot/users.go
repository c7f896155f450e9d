package hot

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/banditstream/banditstream/store/state"
)

// A hot user's keys share the hash tag {<tag>}, where tag is a hash of the
// user id (userTag) rather than the id itself, so that no id (one holding
// braces, say) can break the tag and scatter the user's keys over cluster
// slots; the id follows the tag, so every user's keys stay distinct:
//
//	<prefix>:u:{<tag>}:<user>:m   hash: l = 1 once loaded, ep = the hot
//	                              tier's epoch at load, sid = session id,
//	                              v = version, seen = last activity (ms),
//	                              ps/pe = the sequence numbers of the first
//	                              and next pending event, w:<topic>/<partition>
//	                              = watermarks
//	<prefix>:u:{<tag>}:<user>:h   list: recent events, newest first, capped
//	<prefix>:u:{<tag>}:<user>:p   list: events not yet in the cold tier, oldest first
//	<prefix>:u:{<tag>}:<user>:s   hash: "<context>\x1f<item>\x1f<type>" → count
//	<prefix>:u:{<tag>}:<user>:k   the session-load lock
//	<prefix>:u:{<tag>}:<user>:d   string: the deduplication window, 17-byte
//	                              records of the latest events, oldest first
//	                              (see dedupRecord)
//
// and the activity index is sharded: <prefix>:act:{a<n>} sorted set, user →
// last activity (ms), n = hash(user) mod ActivityShards; so is the flush
// index of sessions with pending events: <prefix>:due:{a<n>} sorted set,
// user → when the oldest of them arrived (ms), 0 once they pass the
// flush bound in number.

// ActivityShards is the number of activity-index shards.
const ActivityShards = 64

func (k Keys) userKey(user, suffix string) string { return k.userBase(user) + suffix }

// userBase is what every key of user starts with: the tag is hashed once
// for all of them.
func (k Keys) userBase(user string) string {
	return k.Prefix + ":u:{" + userTag(user) + "}:" + user + ":"
}

// userTag is the hash tag of a user's keys: the 64-bit FNV-1a hash of the
// id in hex, which holds no brace whatever the id does.
func userTag(user string) string { return strconv.FormatUint(fnv64(user), 16) }

// SessionKey returns the key of a user's session hash, which exists while
// the user is hot (for tools that watch sessions come and go).
func (k Keys) SessionKey(user string) string { return k.userKey(user, "m") }

func (k Keys) userKeys(user string) []string {
	b := k.userBase(user)
	return []string{b + "m", b + "h", b + "p", b + "s", b + "d"}
}

// ActivityKey returns the activity-index shard of a user.
func (k Keys) ActivityKey(user string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return k.activityShardKey(int(h.Sum32() % ActivityShards))
}

func (k Keys) activityShardKey(n int) string {
	return k.Prefix + ":act:{a" + strconv.Itoa(n) + "}"
}

// dueKey returns the flush-index shard of a user: the shard of its
// activity entry, under another name.
func (k Keys) dueKey(user string) string {
	return strings.Replace(k.ActivityKey(user), ":act:", ":due:", 1)
}

func (k Keys) dueShardKey(n int) string {
	return k.Prefix + ":due:{a" + strconv.Itoa(n) + "}"
}

// dedupRecord is the 16 bytes of an event's record in its user's
// deduplication window: the 64-bit FNV-1a hash of its id, then that of its
// position (topic, partition, offset), big-endian. apply_user.lua adds a
// flag byte: 'c' the position counted, 'd' it held an id seen before.
// Two ids of one user's window share a hash with a probability of about
// window²/2⁶⁵. partition is fnv64 of "<topic>/<partition>/", hashed once
// per batch: the position's hash goes on from it with the offset's digits.
func dedupRecord(partition uint64, offset int64, eventID string) string {
	var b [16]byte
	var digits [20]byte
	binary.BigEndian.PutUint64(b[:8], fnv64(eventID))
	binary.BigEndian.PutUint64(b[8:], fnv64From(partition, strconv.AppendInt(digits[:0], offset, 10)))
	return string(b[:])
}

const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

// fnv64 is the 64-bit FNV-1a hash of s.
func fnv64(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// fnv64From goes on hashing b from h, the FNV-1a hash of what came before.
func fnv64From(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// DedupRecordBytes is the size of one event's record in a user's
// deduplication window.
const DedupRecordBytes = 17

// encodeEvent is the compact form of an event in the hot lists. Ids and
// contexts hold no control characters, so \x1f separates fields.
func encodeEvent(e state.HistoryEvent) string {
	return strings.Join([]string{
		e.EventID, e.ItemID, e.Context, strconv.Itoa(int(e.Type)),
		strconv.FormatInt(e.EventTimeMs, 10), e.SessionID, strconv.FormatFloat(e.Value, 'g', -1, 64),
	}, "\x1f")
}

func decodeEvent(user, s string) (state.HistoryEvent, error) {
	f := strings.Split(s, "\x1f")
	if len(f) != 7 {
		return state.HistoryEvent{}, fmt.Errorf("store: malformed hot event %q", s)
	}
	typ, err1 := strconv.Atoi(f[3])
	t, err2 := strconv.ParseInt(f[4], 10, 64)
	v, err3 := strconv.ParseFloat(f[6], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return state.HistoryEvent{}, fmt.Errorf("store: malformed hot event %q: %w", s, err)
	}
	return state.HistoryEvent{UserID: user, EventID: f[0], ItemID: f[1], Context: f[2], Type: int32(typ), EventTimeMs: t, SessionID: f[5], Value: v}, nil
}

// A user's own counts are a hash of fields "<context>\x1f<item>\x1f<type
// index>" → count; with decay, each arm also has "<arm>\x1ft" → its latest
// event time (ms) and "<arm>\x1fd<type index>" → its decayed count as of
// then.
func userArmField(e state.HistoryEvent, typeIndex int) string {
	return e.Context + "\x1f" + e.ItemID + "\x1f" + strconv.Itoa(typeIndex)
}

// parseUserArmFields reads the user-arm hash's field/value pairs into
// counts per arm ("<context>\x1f<item>").
func parseUserArmFields(flat []string) (map[string]state.Counts, error) {
	arms := make(map[string]state.Counts, len(flat)/12+1)
	for i := 0; i+1 < len(flat); i += 2 {
		field, v := flat[i], flat[i+1]
		cut := strings.LastIndexByte(field, 0x1f)
		if cut < 0 {
			return nil, fmt.Errorf("store: user-arm field %q is malformed", field)
		}
		arm, kind := field[:cut], field[cut+1:]
		c := arms[arm]
		var err error
		switch {
		case kind == "t":
			c.LastEventMs, err = strconv.ParseInt(v, 10, 64)
		case len(kind) == 2 && kind[0] == 'd' && kind[1] >= '0' && int(kind[1]-'0') < state.NumEventTypes:
			c.Decayed[kind[1]-'0'], err = strconv.ParseFloat(v, 64)
		case len(kind) == 1 && kind[0] >= '0' && int(kind[0]-'0') < state.NumEventTypes:
			c.ByType[kind[0]-'0'], err = strconv.ParseInt(v, 10, 64)
		default:
			return nil, fmt.Errorf("store: user-arm field %q has no event type", field)
		}
		if err != nil {
			return nil, fmt.Errorf("store: user-arm value %q of %q is not a number", v, field)
		}
		arms[arm] = c
	}
	return arms, nil
}

// encodeUserCounts is how the cold tier carries an arm of a user's own
// counts: the five counts, and with decay (a latest event time) as
// state.EncodeCounts writes them.
func encodeUserCounts(c state.Counts) []int64 {
	if c.LastEventMs == 0 {
		return c.ByType[:]
	}
	return state.EncodeCounts(c)
}

// appendUserArmFields appends the user-arm hash's field/value pairs of arm
// with counts (as encodeUserCounts writes them); counts that are zero are
// left out.
func appendUserArmFields(args []any, arm string, counts []int64) []any {
	var c state.Counts
	copy(c.ByType[:], counts)
	if d, err := state.DecodeCounts(counts); err == nil {
		c = d // with decay
	}
	for ty, n := range c.ByType {
		if n != 0 {
			args = append(args, arm+"\x1f"+strconv.Itoa(ty), n)
		}
	}
	if c.LastEventMs != 0 {
		args = append(args, arm+"\x1ft", c.LastEventMs)
		for ty, v := range c.Decayed {
			if v != 0 {
				args = append(args, arm+"\x1fd"+strconv.Itoa(ty), strconv.FormatFloat(v, 'g', -1, 64))
			}
		}
	}
	return args
}

// applyUserScript applies a user's events above the user's watermark for
// the partition. It refuses a user who is not loaded (returns -1): the
// caller loads the session and tries again; and a session loaded in another
// epoch of the hot tier (returns -2): one created after the hot tier lost
// its state and before the loss was noticed, whose watermarks would skip
// the replay.
//
// KEYS: m, h, p, s. ARGV: watermark field, history cap, now (ms), epoch,
// then per event: offset, encoded event, user-arm field. Returns the events
// applied, the session id (see pendingMember) and the events pending.
var applyUserScript = script("apply_user.lua")

// installScript installs a session loaded from the cold tier, unless one
// is installed already, and releases the load lock if it is ours.
//
// KEYS: m, h, s, lock. ARGV: lock token, version, now, epoch, then the
// number of history entries n, n entries (newest first), the number of
// watermark pairs w, w field/value pairs, then field/count pairs of
// user-arm counts.
var installScript = script("install.lua")

// snapshotScript reads, atomically, the state an offload writes (the meta
// hash includes the session's epoch and the pending events' sequence
// numbers); the events themselves are read by pendingChunkScript.
// KEYS: m, s, d. Returns {loaded, window, meta..., '|', stats...}.
var snapshotScript = script("session_read.lua")

// pendingChunkScript reads a bounded range of a session's pending events by
// sequence number, so no reply holds a whole list however long it grew.
// KEYS: m, p. ARGV: session id, from, to (exclusive). Returns nil when the
// session is gone.
var pendingChunkScript = script("pending_chunk.lua")

// evictScript evicts a user only if the session is the one read and nothing
// changed since (same version and last activity), unless told to keep it.
// Otherwise, in the same session, it drops from the pending list the events
// the offload flushed (by sequence number, so two sweepers never drop an
// event twice); in another session (evicted and loaded again meanwhile) it
// does nothing.
// KEYS: m, h, p, s. ARGV: session id, version, seen, the read's pe, keep.
// Returns {1, 0} evicted, {0, events still pending} kept, {-1, 0} another
// session.
var evictScript = script("evict.lua")

// dropStaleScript deletes a session loaded in an epoch other than the
// current one, without flushing it: everything in it is replayed.
// KEYS: m, h, p, s. ARGV: the current epoch.
var dropStaleScript = script("drop_stale.lua")

// dropActivityScript removes a user from the activity index only if the
// recorded activity is the one the sweeper saw.
var dropActivityScript = script("drop_activity.lua")

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
