package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A hot user's keys share the hash tag {<user>}:
//
//	<prefix>:u:{<user>}:m   hash: l = 1 once loaded, ep = the hot tier's
//	                        epoch at load, sid = session id, v =
//	                        version, seen = last activity (ms), ps/pe = the
//	                        sequence numbers of the first and next pending
//	                        event, w:<topic>/<partition> = watermarks
//	<prefix>:u:{<user>}:h   list: recent events, newest first, capped
//	<prefix>:u:{<user>}:p   list: events not yet in the cold tier, oldest first
//	<prefix>:u:{<user>}:s   hash: "<context>\x1f<item>\x1f<type>" → count
//	<prefix>:u:{<user>}:k   the session-load lock
//
// and the activity index is sharded: <prefix>:act:{a<n>} sorted set, user →
// last activity (ms), n = hash(user) mod ActivityShards.

// ActivityShards is the number of activity-index shards.
const ActivityShards = 64

func (k Keys) userKey(user, suffix string) string {
	return k.Prefix + ":u:{" + user + "}:" + suffix
}

// SessionKey returns the key of a user's session hash, which exists while
// the user is hot (for tools that watch sessions come and go).
func (k Keys) SessionKey(user string) string { return k.userKey(user, "m") }

func (k Keys) userKeys(user string) []string {
	return []string{k.userKey(user, "m"), k.userKey(user, "h"), k.userKey(user, "p"), k.userKey(user, "s")}
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

// UserEvent is one event applied to a user's hot state.
type UserEvent struct {
	Offset int64
	Event  HistoryEvent
}

// encodeEvent is the compact form of an event in the hot lists. Ids and
// contexts hold no control characters, so \x1f separates fields.
func encodeEvent(e HistoryEvent) string {
	return strings.Join([]string{
		e.EventID, e.ItemID, e.Context, strconv.Itoa(int(e.Type)),
		strconv.FormatInt(e.EventTimeMs, 10), e.SessionID, strconv.FormatFloat(e.Value, 'g', -1, 64),
	}, "\x1f")
}

func decodeEvent(user, s string) (HistoryEvent, error) {
	f := strings.Split(s, "\x1f")
	if len(f) != 7 {
		return HistoryEvent{}, fmt.Errorf("store: malformed hot event %q", s)
	}
	typ, err1 := strconv.Atoi(f[3])
	t, err2 := strconv.ParseInt(f[4], 10, 64)
	v, err3 := strconv.ParseFloat(f[6], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return HistoryEvent{}, fmt.Errorf("store: malformed hot event %q: %w", s, err)
	}
	return HistoryEvent{UserID: user, EventID: f[0], ItemID: f[1], Context: f[2], Type: int32(typ), EventTimeMs: t, SessionID: f[5], Value: v}, nil
}

func userArmField(e HistoryEvent, typeIndex int) string {
	return e.Context + "\x1f" + e.ItemID + "\x1f" + strconv.Itoa(typeIndex)
}

// parseUserArmField reads a field made by userArmField and its count: the
// arm as "<context>\x1f<item>", the type index and the count.
func parseUserArmField(field, count string) (arm string, typeIndex int, n int64, err error) {
	cut := strings.LastIndexByte(field, 0x1f)
	if cut < 0 {
		return "", 0, 0, fmt.Errorf("store: user-arm field %q is malformed", field)
	}
	typeIndex, err = strconv.Atoi(field[cut+1:])
	if err != nil || typeIndex < 0 || typeIndex >= NumEventTypes {
		return "", 0, 0, fmt.Errorf("store: user-arm field %q has no event type", field)
	}
	if n, err = strconv.ParseInt(count, 10, 64); err != nil {
		return "", 0, 0, fmt.Errorf("store: user-arm count %q of %q is not a number", count, field)
	}
	return field[:cut], typeIndex, n, nil
}

// applyUserScript applies a user's events above the user's watermark for
// the partition. It refuses a user who is not loaded (returns -1): the
// caller loads the session and tries again; and a session loaded in another
// epoch of the hot tier (returns -2): one created after the hot tier lost
// its state and before the loss was noticed, whose watermarks would skip
// the replay.
//
// KEYS: m, h, p, s. ARGV: watermark field, history cap, now (ms), epoch,
// then per event: offset, encoded event, user-arm field.
var applyUserScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'l', 'ep')
if m[1] ~= '1' then return -1 end
if m[2] ~= ARGV[4] then return -2 end
local wm = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local last, events, counts, fields = wm, {}, {}, {}
for i = 5, #ARGV, 3 do
  local off = tonumber(ARGV[i])
  if off > wm then
    table.insert(events, ARGV[i + 1])
    local f = ARGV[i + 2]
    if counts[f] == nil then table.insert(fields, f); counts[f] = 0 end
    counts[f] = counts[f] + 1
    if off > last then last = off end
  end
end
local applied = #events
if applied > 0 then
  -- One command per list (per 1000 events: unpack has a stack limit) and
  -- per distinct arm, however many events.
  for j = 1, applied, 1000 do
    local k = math.min(j + 999, applied)
    redis.call('LPUSH', KEYS[2], unpack(events, j, k))
    redis.call('RPUSH', KEYS[3], unpack(events, j, k))
  end
  for _, f in ipairs(fields) do redis.call('HINCRBY', KEYS[4], f, counts[f]) end
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', last), 'seen', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'pe', applied)
  redis.call('HINCRBY', KEYS[1], 'v', 1)
else
  redis.call('HSET', KEYS[1], 'seen', ARGV[3])
end
return applied
`)

// installScript installs a session loaded from the cold tier, unless one
// is installed already, and releases the load lock if it is ours.
//
// KEYS: m, h, s, lock. ARGV: lock token, version, now, epoch, then the
// number of history entries n, n entries (newest first), the number of
// watermark pairs w, w field/value pairs, then field/count pairs of
// user-arm counts.
var installScript = redis.NewScript(`
local installed = 0
if redis.call('HGET', KEYS[1], 'l') ~= '1' then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'l', '1', 'ep', ARGV[4], 'sid', ARGV[1], 'v', ARGV[2], 'seen', ARGV[3], 'ps', '0', 'pe', '0')
  local i = 5
  local n = tonumber(ARGV[i]); i = i + 1
  for j = 1, n do redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1 end
  local w = tonumber(ARGV[i]); i = i + 1
  for j = 1, w do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2 end
  while i <= #ARGV do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]); i = i + 2 end
  installed = 1
end
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return installed
`)

// snapshotScript reads everything an offload needs, atomically (the meta
// hash includes the session's epoch).
// KEYS: m, p, s. Returns {loaded, version, seen, meta..., '|', pending...,
// '|', stats...}.
var snapshotScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'l') ~= '1' then return {'0'} end
local out = {'1'}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
table.insert(out, '|')
for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do table.insert(out, v) end
table.insert(out, '|')
for _, v in ipairs(redis.call('HGETALL', KEYS[3])) do table.insert(out, v) end
return out
`)

// evictScript evicts a user only if the session is the one snapshotted and
// nothing changed since (same version and last activity). Otherwise, in the
// same session, it drops from the pending list the events the snapshot
// flushed (by sequence number, so two sweepers never drop an event twice);
// in another session (evicted and loaded again meanwhile) it does nothing.
// KEYS: m, h, p, s. ARGV: session id, version, seen, the snapshot's pe.
// Returns 1 evicted, 0 kept, -1 another session.
var evictScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'sid', 'v', 'seen', 'ps')
if m[1] ~= ARGV[1] then return -1 end
if m[2] == ARGV[2] and m[3] == ARGV[3] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
local k = tonumber(ARGV[4]) - tonumber(m[4] or '0')
if k > 0 then
  redis.call('LTRIM', KEYS[3], k, -1)
  redis.call('HINCRBY', KEYS[1], 'ps', k)
end
return 0
`)

// dropStaleScript deletes a session loaded in an epoch other than the
// current one, without flushing it: everything in it is replayed.
// KEYS: m, h, p, s. ARGV: the current epoch.
var dropStaleScript = redis.NewScript(`
local ep = redis.call('HGET', KEYS[1], 'ep')
if ep and ep ~= ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
return 0
`)

// dropActivityScript removes a user from the activity index only if the
// recorded activity is the one the sweeper saw.
var dropActivityScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) return 1 end
return 0
`)

func newToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func nowMs() int64 { return time.Now().UnixMilli() }
