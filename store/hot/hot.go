package hot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/banditstream/banditstream/sampler"
	"github.com/banditstream/banditstream/store/state"
	"github.com/redis/go-redis/v9"
)

// Hot is the hot tier: arm counts and their offset watermarks in Redis,
// Redis Cluster or Dragonfly.
type Hot struct {
	rdb  redis.UniversalClient
	keys Keys
	// loads are the session-load locks this process holds, by token,
	// renewed while their loader works.
	loads sync.Map
	// markers are WaitReplicas' keys, by cluster master address.
	markers sync.Map
}

// New returns the hot tier on rdb with the key layout keys.
func New(rdb redis.UniversalClient, keys Keys) (*Hot, error) {
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

// Decay is the namespace's decay (Keys.HalfLife).
func (h *Hot) Decay() sampler.Decay { return sampler.Decay{HalfLife: h.keys.HalfLife} }

// Shard returns the shard of an arm.
func (h *Hot) Shard(a state.Arm) int { return h.keys.Shard(a) }

// Watermarks returns, for every shard, the last offset of topic/partition
// applied to it (state.NoWatermark if none), and the hot tier's recovery epoch.
// An empty epoch means the hot tier lost its state (or is new): call
// Recover before applying anything.
func (h *Hot) Watermarks(ctx context.Context, topic string, partition int) ([]int64, string, error) {
	field := watermarkField(topic, partition)
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, h.keys.Shards)
	for s := range cmds {
		cmds[s] = pipe.HMGet(ctx, h.keys.WatermarkKey(s), field, epochField)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, "", fmt.Errorf("reading watermarks of %s: %w", field, err)
	}
	out := make([]int64, h.keys.Shards)
	epochs := make([]string, h.keys.Shards)
	for s, cmd := range cmds {
		vals := cmd.Val()
		epochs[s], _ = vals[1].(string)
		out[s] = state.NoWatermark
		if v, ok := vals[0].(string); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, "", fmt.Errorf("watermark of shard %d for %s is %q", s, field, v)
			}
			out[s] = n
		}
	}
	return out, commonEpoch(epochs), nil
}

// epochField, in every shard's watermark hash, names the hot tier's
// recovery epoch: a token set on all shards when the hot tier is found
// empty (new, or lost by a restart without persistence) and recovered.
// Every apply names the epoch its writer read, so after a loss no writer
// keeps going on stale watermarks.
const epochField = "epoch"

// Recover starts a new epoch on every shard, once however many writers
// find the loss at the same time, and returns it. A writer that finds an
// epoch other than seen, and complete, has found someone else's recovery.
func (h *Hot) Recover(ctx context.Context, seen string) (string, error) {
	return h.RecoverWith(ctx, seen, nil)
}

// RecoverWith is Recover with restore, run under the lock before the new
// epoch is set on the shards (restore may set it on shards it restores).
func (h *Hot) RecoverWith(ctx context.Context, seen string, restore func(epoch string) error) (string, error) {
	// A lease, renewed while a large snapshot is restored: a recoverer
	// killed half-way holds the others up for at most LeaseTTL.
	key := h.keys.Prefix + ":recover-lock"
	for {
		l, got, err := acquireLease(ctx, h.rdb, key, LeaseTTL)
		if err != nil {
			return "", fmt.Errorf("locking recovery: %w", err)
		}
		if !got {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		epoch, err := h.currentEpoch(ctx)
		if err == nil && (epoch == "" || epoch == seen) {
			epoch = l.token
			if restore != nil {
				err = restore(epoch)
			}
		}
		if err == nil && epoch == l.token {
			pipe := h.rdb.Pipeline()
			for s := 0; s < h.keys.Shards; s++ {
				pipe.HSet(ctx, h.keys.WatermarkKey(s), epochField, epoch)
			}
			_, err = pipe.Exec(ctx)
		}
		l.release(ctx)
		if err != nil {
			return "", fmt.Errorf("recovering the hot tier: %w", err)
		}
		return epoch, nil
	}
}

// currentEpoch returns the epoch all shards share, or "" if any lacks it or
// they differ.
func (h *Hot) currentEpoch(ctx context.Context) (string, error) {
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, h.keys.Shards)
	for s := range cmds {
		cmds[s] = pipe.HGet(ctx, h.keys.WatermarkKey(s), epochField)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return "", err
	}
	epochs := make([]string, len(cmds))
	for i, c := range cmds {
		epochs[i] = c.Val()
	}
	return commonEpoch(epochs), nil
}

// commonEpoch is the epoch every shard carries, or "" when any shard lacks
// one or they differ: some shard lost its state.
func commonEpoch(epochs []string) string {
	for _, e := range epochs {
		if e == "" || e != epochs[0] {
			return ""
		}
	}
	if len(epochs) == 0 {
		return ""
	}
	return epochs[0]
}

// applyScript applies one shard's deltas and moves its watermark, only if
// the watermark is still the one the caller read: a compare-and-set that
// makes a batch count once even when a partition's former owner is still
// writing. Returns {1, new} when applied, {0, current} on conflict.
//
// {2, ”} means the shard's epoch is not the writer's: the hot tier lost
// its state.
//
// KEYS[1] watermark hash; KEYS[2] the shard's arm index (a set of arm
// keys, for snapshots); KEYS[3..] arm hashes.
// ARGV[1] watermark field, ARGV[2] expected, ARGV[3] new watermark, ARGV[4]
// epoch, ARGV[5] the half-life in ms (0: none), then six numbers per arm:
// five counts and the last event time, and with a half-life five more: the
// decayed counts as of that time.
var applyScript = script("apply.lua")

// Apply applies the shards' deltas of a batch of topic/partition ending at
// offset last, each shard atomically with its watermark, in one pipeline.
// When some shard's watermark was not the expected one, it returns
// state.ErrConflict and, for those shards, their current watermark; the other
// shards are applied.
//
// It returns state.ErrHotLost when a shard's epoch is not epoch.
func (h *Hot) Apply(ctx context.Context, topic string, partition int, last int64, epoch string, shards []state.ShardBatch) (current map[int]int64, err error) {
	field := watermarkField(topic, partition)
	newWM := strconv.FormatInt(last, 10)
	halfLife := h.keys.HalfLife.Milliseconds()
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(shards))
	for i, sb := range shards {
		keys := make([]string, 2, 2+len(sb.Deltas))
		keys[0], keys[1] = h.keys.WatermarkKey(sb.Shard), h.keys.armIndexKey(sb.Shard)
		args := make([]any, 5, 5+11*len(sb.Deltas))
		args[0], args[1], args[2], args[3], args[4] = field, strconv.FormatInt(sb.Expected, 10), newWM, epoch, halfLife
		for _, d := range sb.Deltas {
			keys = append(keys, h.keys.ArmKey(sb.Shard, d.Arm))
			for _, n := range d.Counts.ByType {
				args = append(args, n)
			}
			args = append(args, d.Counts.LastEventMs)
			if halfLife > 0 {
				for _, v := range d.Counts.Decayed {
					args = append(args, strconv.FormatFloat(v, 'g', -1, 64))
				}
			}
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
			return h.Apply(ctx, topic, partition, last, epoch, shards)
		}
		return nil, refused(fmt.Errorf("applying batch of %s up to %d: %w", field, last, err))
	}
	var conflict, lost bool
	for i, cmd := range cmds {
		res, err := cmd.Slice()
		if err != nil {
			return nil, refused(fmt.Errorf("applying shard %d of %s: %w", shards[i].Shard, field, err))
		}
		if len(res) != 2 {
			return nil, fmt.Errorf("applying shard %d of %s: unexpected reply %v", shards[i].Shard, field, res)
		}
		switch code, _ := res[0].(int64); code {
		case 1:
			continue
		case 2:
			lost = true
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
	if lost {
		return nil, state.ErrHotLost
	}
	if conflict {
		return current, state.ErrConflict
	}
	return nil, nil
}

// MarkPartitionApplied records that every event of topic/partition up to
// last is applied to every shard (in epoch): after a loss, a replay of the
// partition may start right after it.
func (h *Hot) MarkPartitionApplied(ctx context.Context, topic string, partition int, last int64, epoch string) error {
	pipe := h.rdb.Pipeline()
	pipe.HSet(ctx, h.keys.partitionKey(topic, partition), "o", last, "ep", epoch)
	pipe.SAdd(ctx, h.keys.Prefix+":parts", watermarkField(topic, partition))
	_, err := pipe.Exec(ctx)
	return refused(err)
}

// PartitionApplied returns what MarkPartitionApplied recorded in epoch.
func (h *Hot) PartitionApplied(ctx context.Context, topic string, partition int, epoch string) (int64, bool, error) {
	vals, err := h.rdb.HMGet(ctx, h.keys.partitionKey(topic, partition), "o", "ep").Result()
	if err != nil {
		return 0, false, err
	}
	o, _ := vals[0].(string)
	ep, _ := vals[1].(string)
	if o == "" || ep != epoch {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(o, 10, 64)
	return n, err == nil, err
}

// snapshotShardScript reads a shard atomically: its epoch, its watermark
// hash, and every indexed arm's counts.
var snapshotShardScript = script("snapshot_shard.lua")

// SnapshotShard reads one shard's arms and watermarks, atomically, if the
// shard is in epoch.
func (h *Hot) SnapshotShard(ctx context.Context, shard int, epoch string) (state.ShardSnapshot, error) {
	res, err := snapshotShardScript.Run(ctx, h.rdb, []string{h.keys.WatermarkKey(shard), h.keys.armIndexKey(shard)}).StringSlice()
	if err != nil {
		return state.ShardSnapshot{}, fmt.Errorf("reading shard %d: %w", shard, err)
	}
	if len(res) < 2 || res[0] != epoch {
		return state.ShardSnapshot{}, fmt.Errorf("shard %d: epoch %q, want %q", shard, res[0], epoch)
	}
	sh := state.ShardSnapshot{Shard: shard, Watermarks: map[string]int64{}, Arms: map[string][]int64{}}
	n, _ := strconv.Atoi(res[1])
	i := 2
	for ; i+1 < 2+n; i += 2 {
		if res[i] == epochField {
			continue
		}
		v, err := strconv.ParseInt(res[i+1], 10, 64)
		if err != nil {
			return sh, fmt.Errorf("shard %d: watermark %s is %q", shard, res[i], res[i+1])
		}
		sh.Watermarks[res[i]] = v
	}
	err = h.eachArm(shard, res[i:], func(arm string, c state.Counts) { sh.Arms[arm] = state.EncodeCounts(c) })
	return sh, err
}

// eachArm calls fn with each arm of a shard's snapshot_shard.lua reply
// past its watermarks ("context\x1fitem" and its counts).
func (h *Hot) eachArm(shard int, res []string, fn func(arm string, c state.Counts)) error {
	prefix := h.keys.ArmKey(shard, state.Arm{})
	prefix = prefix[:len(prefix)-1] // without the \x1f of the empty arm
	per := 1 + len(armFields)
	for i := 0; i+per-1 < len(res); i += per {
		c, err := parseArm(res[i+1 : i+per])
		if err != nil {
			return fmt.Errorf("shard %d: arm %q: %w", shard, res[i], err)
		}
		fn(strings.TrimPrefix(res[i], prefix), c)
	}
	return nil
}

// ShardCounts calls fn with every arm of a shard and its counts, read
// atomically, whatever the shard's epoch.
func (h *Hot) ShardCounts(ctx context.Context, shard int, fn func(state.Arm, state.Counts)) error {
	res, err := snapshotShardScript.Run(ctx, h.rdb, []string{h.keys.WatermarkKey(shard), h.keys.armIndexKey(shard)}).StringSlice()
	if err != nil {
		return fmt.Errorf("reading shard %d: %w", shard, err)
	}
	if len(res) < 2 {
		return fmt.Errorf("reading shard %d: a reply of %d values", shard, len(res))
	}
	n, _ := strconv.Atoi(res[1])
	return h.eachArm(shard, res[min(2+n, len(res)):], func(arm string, c state.Counts) {
		ctxt, item, _ := strings.Cut(arm, "\x1f")
		fn(state.Arm{Context: ctxt, Item: item}, c)
	})
}

// RestoreShard replaces a shard's arms and watermarks with a snapshot's,
// and sets its epoch last.
func (h *Hot) RestoreShard(ctx context.Context, sh state.ShardSnapshot, epoch string) error {
	idx := h.keys.armIndexKey(sh.Shard)
	old, err := h.rdb.SMembers(ctx, idx).Result()
	if err != nil {
		return err
	}
	pipe := h.rdb.Pipeline()
	for i := 0; i < len(old); i += 500 {
		pipe.Del(ctx, old[i:min(i+500, len(old))]...)
	}
	pipe.Del(ctx, idx, h.keys.WatermarkKey(sh.Shard))
	for arm, v := range sh.Arms {
		c, err := state.DecodeCounts(v)
		if err != nil {
			return fmt.Errorf("shard %d: arm %q: %w", sh.Shard, arm, err)
		}
		ctxt, item, _ := strings.Cut(arm, "\x1f")
		key := h.keys.ArmKey(sh.Shard, state.Arm{Context: ctxt, Item: item})
		pipe.HSet(ctx, key, armValues(c)...)
		pipe.SAdd(ctx, idx, key)
	}
	for f, v := range sh.Watermarks {
		pipe.HSet(ctx, h.keys.WatermarkKey(sh.Shard), f, v)
	}
	pipe.HSet(ctx, h.keys.WatermarkKey(sh.Shard), epochField, epoch)
	_, err = pipe.Exec(ctx)
	return err
}

// Counts returns the counts of each arm, zero for an arm never seen; the
// decayed counts are read in a namespace with decay only.
func (h *Hot) Counts(ctx context.Context, arms []state.Arm) ([]state.Counts, error) {
	fields := armFields[:state.NumEventTypes+1]
	if h.keys.HalfLife > 0 {
		fields = armFields
	}
	pipe := h.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(arms))
	for i, a := range arms {
		cmds[i] = pipe.HMGet(ctx, h.keys.ArmKey(h.keys.Shard(a), a), fields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading arm counts: %w", err)
	}
	out := make([]state.Counts, len(arms))
	vals := make([]string, len(armFields))
	for i, cmd := range cmds {
		clear(vals)
		for f, v := range cmd.Val() {
			vals[f], _ = v.(string)
		}
		var err error
		if out[i], err = parseArm(vals); err != nil {
			return nil, fmt.Errorf("arm %v: %w", arms[i], err)
		}
	}
	return out, nil
}

// parseArm reads an arm's fields, in armFields' order (or only the first
// six); a missing one ("" or "0") is zero.
func parseArm(vals []string) (state.Counts, error) {
	var c state.Counts
	for f, s := range vals {
		if s == "" || s == "0" {
			continue
		}
		var err error
		switch {
		case f < state.NumEventTypes:
			c.ByType[f], err = strconv.ParseInt(s, 10, 64)
		case f == state.NumEventTypes:
			c.LastEventMs, err = strconv.ParseInt(s, 10, 64)
		default:
			c.Decayed[f-state.NumEventTypes-1], err = strconv.ParseFloat(s, 64)
		}
		if err != nil {
			return c, fmt.Errorf("field %s is %q", armFields[f], s)
		}
	}
	return c, nil
}

// armValues are the field-value pairs of an arm's hash holding c.
func armValues(c state.Counts) []any {
	out := make([]any, 0, 2*len(armFields))
	for i, n := range c.ByType {
		out = append(out, countFields[i], n)
	}
	out = append(out, "t", c.LastEventMs)
	if c.Decayed != ([state.NumEventTypes]float64{}) {
		for i, v := range c.Decayed {
			out = append(out, decayedFields[i], strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	return out
}
