package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Hot is the hot tier: arm counts and their offset watermarks in Redis,
// Redis Cluster or Dragonfly.
type Hot struct {
	rdb  redis.UniversalClient
	keys Keys
}

// NewHot returns the hot tier on rdb with the key layout keys.
func NewHot(rdb redis.UniversalClient, keys Keys) (*Hot, error) {
	if rdb == nil {
		return nil, errors.New("store: nil Redis client")
	}
	if err := keys.Validate(); err != nil {
		return nil, err
	}
	return &Hot{rdb: rdb, keys: keys}, nil
}

// Keys returns the key layout.
func (h *Hot) Keys() Keys { return h.keys }

// NoWatermark is the watermark of a (shard, partition) never written.
const NoWatermark int64 = -1

// Watermarks returns, for every shard, the last offset of topic/partition
// applied to it (NoWatermark if none).
func (h *Hot) Watermarks(ctx context.Context, topic string, partition int) ([]int64, error) {
	field := watermarkField(topic, partition)
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, h.keys.Shards)
	for s := range cmds {
		cmds[s] = pipe.HGet(ctx, h.keys.WatermarkKey(s), field)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading watermarks of %s: %w", field, err)
	}
	out := make([]int64, h.keys.Shards)
	for s, cmd := range cmds {
		v, err := cmd.Int64()
		switch {
		case errors.Is(err, redis.Nil):
			out[s] = NoWatermark
		case err != nil:
			return nil, fmt.Errorf("reading watermark of shard %d for %s: %w", s, field, err)
		default:
			out[s] = v
		}
	}
	return out, nil
}

// applyScript applies one shard's deltas and moves its watermark, only if
// the watermark is still the one the caller read: a compare-and-set that
// makes a batch count once even when a partition's former owner is still
// writing. Returns {1, new} when applied, {0, current} on conflict.
//
// KEYS[1] watermark hash; KEYS[2..] arm hashes.
// ARGV[1] watermark field, ARGV[2] expected, ARGV[3] new watermark, then six
// numbers per arm: five counts and the last event time.
var applyScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or '-1'
if cur ~= ARGV[2] then return {0, cur} end
local fields = {'i', 'c', 'w', 'a', 'o'}
for k = 2, #KEYS do
  local b = 4 + (k - 2) * 6
  for f = 1, 5 do
    local n = ARGV[b + f - 1]
    if n ~= '0' then redis.call('HINCRBY', KEYS[k], fields[f], n) end
  end
  local t = tonumber(ARGV[b + 5])
  local old = tonumber(redis.call('HGET', KEYS[k], 't') or '0')
  if t > old then redis.call('HSET', KEYS[k], 't', ARGV[b + 5]) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {1, ARGV[3]}
`)

// ShardBatch is one shard's part of a batch.
type ShardBatch struct {
	Shard    int
	Expected int64 // the watermark read before; NoWatermark if none
	Deltas   []ArmDelta
}

// ErrConflict means a shard's watermark was not the expected one: another
// writer applied events of the same partition. Re-read the watermarks and
// filter again.
var ErrConflict = errors.New("store: watermark changed by another writer")

// Apply applies the shards' deltas of a batch of topic/partition ending at
// offset last, each shard atomically with its watermark, in one pipeline.
// When some shard's watermark was not the expected one, it returns
// ErrConflict and, for those shards, their current watermark; the other
// shards are applied.
func (h *Hot) Apply(ctx context.Context, topic string, partition int, last int64, shards []ShardBatch) (current map[int]int64, err error) {
	field := watermarkField(topic, partition)
	newWM := strconv.FormatInt(last, 10)
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(shards))
	for i, sb := range shards {
		keys := make([]string, 1, 1+len(sb.Deltas))
		keys[0] = h.keys.WatermarkKey(sb.Shard)
		args := make([]any, 3, 3+6*len(sb.Deltas))
		args[0], args[1], args[2] = field, strconv.FormatInt(sb.Expected, 10), newWM
		for _, d := range sb.Deltas {
			keys = append(keys, h.keys.ArmKey(sb.Shard, d.Arm))
			for _, n := range d.Counts.ByType {
				args = append(args, n)
			}
			args = append(args, d.Counts.LastEventMs)
		}
		cmds[i] = applyScript.Run(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// After a server restart the script cache is empty and EVALSHA in a
		// pipeline cannot fall back to EVAL: load it and run again. Shards
		// that did apply report a conflict at the new watermark, which
		// counts as applied below.
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			if lerr := applyScript.Load(ctx, h.rdb).Err(); lerr != nil {
				return nil, fmt.Errorf("loading the apply script: %w", lerr)
			}
			return h.Apply(ctx, topic, partition, last, shards)
		}
		return nil, fmt.Errorf("applying batch of %s up to %d: %w", field, last, err)
	}
	var conflict bool
	for i, cmd := range cmds {
		res, err := cmd.Slice()
		if err != nil {
			return nil, fmt.Errorf("applying shard %d of %s: %w", shards[i].Shard, field, err)
		}
		if len(res) != 2 {
			return nil, fmt.Errorf("applying shard %d of %s: unexpected reply %v", shards[i].Shard, field, res)
		}
		if ok, _ := res[0].(int64); ok == 1 {
			continue
		}
		if current == nil {
			current = map[int]int64{}
		}
		s, _ := res[1].(string)
		v, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil {
			return nil, fmt.Errorf("shard %d of %s: bad watermark %q", shards[i].Shard, field, s)
		}
		if v == last {
			continue // applied already, by this batch or an identical one
		}
		current[shards[i].Shard] = v
		conflict = true
	}
	if conflict {
		return current, ErrConflict
	}
	return nil, nil
}

// Counts returns the counts of each arm, zero for an arm never seen.
func (h *Hot) Counts(ctx context.Context, arms []Arm) ([]Counts, error) {
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(arms))
	for i, a := range arms {
		cmds[i] = pipe.HMGet(ctx, h.keys.ArmKey(h.keys.Shard(a), a), countFields[0], countFields[1], countFields[2], countFields[3], countFields[4], "t")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading arm counts: %w", err)
	}
	out := make([]Counts, len(arms))
	for i, cmd := range cmds {
		vals := cmd.Val()
		for f, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("arm %v: field %d is %q", arms[i], f, s)
			}
			if f < NumEventTypes {
				out[i].ByType[f] = n
			} else {
				out[i].LastEventMs = n
			}
		}
	}
	return out, nil
}
