package hot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/banditstream/banditstream/store/state"
	"github.com/redis/go-redis/v9"
)

// NamespaceDiff compares the arm counts of two namespaces (key prefixes).
type NamespaceDiff struct {
	Equal, Differ         int
	OnlyHere, OnlyThere   int
	Examples              []string // up to 10 differences, readable
	HereArms, ThereArms   int
	HereEpoch, ThereEpoch string
}

// Same reports whether the two namespaces hold the same arms with the same
// counts.
func (d NamespaceDiff) Same() bool { return d.Differ == 0 && d.OnlyHere == 0 && d.OnlyThere == 0 }

func (d *NamespaceDiff) example(format string, args ...any) {
	if len(d.Examples) < 10 {
		d.Examples = append(d.Examples, fmt.Sprintf(format, args...))
	}
}

// Diff compares every arm's counts by event type in h with other's (the
// latest event time is not compared). Both must have the same number of
// shards. Each shard is read atomically, but the two namespaces at
// slightly different times: compare quiet namespaces.
func (h *Hot) Diff(ctx context.Context, other *Hot) (NamespaceDiff, error) {
	var d NamespaceDiff
	if h.keys.Shards != other.keys.Shards {
		return d, fmt.Errorf("store: %d shards against %d", h.keys.Shards, other.keys.Shards)
	}
	var err error
	if d.HereEpoch, err = h.currentEpoch(ctx); err != nil {
		return d, err
	}
	if d.ThereEpoch, err = other.currentEpoch(ctx); err != nil {
		return d, err
	}
	for s := 0; s < h.keys.Shards; s++ {
		here, err := h.shardArms(ctx, s, d.HereEpoch)
		if err != nil {
			return d, err
		}
		there, err := other.shardArms(ctx, s, d.ThereEpoch)
		if err != nil {
			return d, err
		}
		d.HereArms += len(here)
		d.ThereArms += len(there)
		for arm, c := range here {
			o, ok := there[arm]
			switch {
			case !ok:
				d.OnlyHere++
				d.example("%s: %v here, absent there", readableArm(arm), c[:state.NumEventTypes])
			case !slices.Equal(c[:state.NumEventTypes], o[:state.NumEventTypes]):
				d.Differ++
				d.example("%s: %v here, %v there", readableArm(arm), c[:state.NumEventTypes], o[:state.NumEventTypes])
			default:
				d.Equal++
			}
		}
		for arm, c := range there {
			if _, ok := here[arm]; !ok {
				d.OnlyThere++
				d.example("%s: absent here, %v there", readableArm(arm), c[:state.NumEventTypes])
			}
		}
	}
	return d, nil
}

// shardArms reads a shard's arms; a namespace without an epoch (empty, or
// lost) has none.
func (h *Hot) shardArms(ctx context.Context, shard int, epoch string) (map[string][]int64, error) {
	if epoch == "" {
		return nil, nil
	}
	sh, err := h.SnapshotShard(ctx, shard, epoch)
	if err != nil {
		return nil, err
	}
	return sh.Arms, nil
}

func readableArm(arm string) string {
	ctx, item, _ := strings.Cut(arm, "\x1f")
	return fmt.Sprintf("(%q, %q)", ctx, item)
}

// Promote replaces every shard of h (arms and watermarks) with src's, as a
// restore from a snapshot does: after a shadow rebuild is checked, it
// becomes the live state. Ingest into h must be stopped meanwhile (its
// partitions then resume from their commits, and the copied watermarks
// skip what the rebuild holds). Users' sessions are not copied.
func (h *Hot) Promote(ctx context.Context, src *Hot) error {
	if h.keys.Shards != src.keys.Shards {
		return fmt.Errorf("store: %d shards against %d", h.keys.Shards, src.keys.Shards)
	}
	srcEpoch, err := src.currentEpoch(ctx)
	if err != nil {
		return err
	}
	if srcEpoch == "" {
		return errors.New("store: the namespace to promote has no state")
	}
	dstEpoch, err := h.currentEpoch(ctx)
	if err != nil {
		return err
	}
	if dstEpoch == "" {
		if dstEpoch, err = h.Recover(ctx, ""); err != nil {
			return err
		}
	}
	for s := 0; s < h.keys.Shards; s++ {
		sh, err := src.SnapshotShard(ctx, s, srcEpoch)
		if err != nil {
			return err
		}
		if err := h.RestoreShard(ctx, sh, dstEpoch); err != nil {
			return fmt.Errorf("promoting shard %d: %w", s, err)
		}
	}
	// The counts are src's now, and so is their half-life: processes
	// started with the old one are refused (PairHalfLife).
	hl, err := src.rdb.HGet(ctx, src.keys.Prefix+":ns", "halflife_ms").Result()
	switch {
	case errors.Is(err, redis.Nil):
		return h.rdb.HDel(ctx, h.keys.Prefix+":ns", "halflife_ms").Err()
	case err != nil:
		return err
	}
	return h.rdb.HSet(ctx, h.keys.Prefix+":ns", "halflife_ms", hl).Err()
}

// NamespaceUsage is what a namespace holds: its keys and the memory Redis
// reports for them (MEMORY USAGE).
type NamespaceUsage struct {
	Keys, Bytes int64
}

// Expire sets a time to live on every key of the namespace (every master
// of a cluster is scanned) and returns what it holds: a shadow namespace,
// written by a replay for a check, then frees its memory by itself. ttl 0
// measures only.
func (h *Hot) Expire(ctx context.Context, ttl time.Duration) (NamespaceUsage, error) {
	var mu sync.Mutex
	var total NamespaceUsage
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, globEscape(h.keys.Prefix)+":*", 1000).Iterator()
		var batch []string
		flush := func() error {
			pipe := c.Pipeline()
			usage := make([]*redis.IntCmd, len(batch))
			for i, k := range batch {
				usage[i] = pipe.MemoryUsage(ctx, k, 0)
				if ttl > 0 {
					pipe.Expire(ctx, k, ttl)
				}
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("expiring namespace %s: %w", h.keys.Prefix, err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, u := range usage {
				total.Keys++
				total.Bytes += u.Val()
			}
			batch = batch[:0]
			return nil
		}
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scanning namespace %s: %w", h.keys.Prefix, err)
		}
		return flush()
	}
	var err error
	if cc, ok := h.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, h.rdb)
	}
	return total, err
}

// globEscape escapes the pattern characters of a SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ErrPairing means a namespace is paired with another cold keyspace than
// the one a process names: its sessions would load and flush another
// namespace's user states.
var ErrPairing = errors.New("store: hot namespace paired with another cold keyspace")

// ErrHalfLife means a namespace's counts decay with another half-life than
// the one a process was given: its counts would mix two decays.
var ErrHalfLife = errors.New("store: hot namespace decays with another half-life")

// PairHalfLife records the namespace's decay half-life (Keys.HalfLife), or
// checks it: every process writing or reading a namespace's decayed counts
// must use the same one. The record is lost with the hot tier's state, like
// Pair's.
func (h *Hot) PairHalfLife(ctx context.Context) error {
	key, want := h.keys.Prefix+":ns", strconv.FormatInt(h.keys.HalfLife.Milliseconds(), 10)
	if err := h.rdb.HSetNX(ctx, key, "halflife_ms", want).Err(); err != nil {
		return fmt.Errorf("recording the half-life of namespace %s: %w", h.keys.Prefix, refused(err))
	}
	got, err := h.rdb.HGet(ctx, key, "halflife_ms").Result()
	if err != nil {
		return fmt.Errorf("reading the half-life of namespace %s: %w", h.keys.Prefix, err)
	}
	if got != want {
		ms, _ := strconv.ParseInt(got, 10, 64)
		return fmt.Errorf("%w: namespace %s decays with half-life %s, not %s (0: none); replay into another prefix to change it",
			ErrHalfLife, h.keys.Prefix, time.Duration(ms)*time.Millisecond, h.keys.HalfLife)
	}
	return nil
}

// Pair records that the namespace's cold state lives in keyspace, or
// checks that it does: a namespace paired with another keyspace is
// refused, so a process given the live prefix and a shadow's keyspace (or
// the other way round) writes nothing. The pairing is lost with the hot
// tier's state, and the first process after a loss pairs it again.
func (h *Hot) Pair(ctx context.Context, keyspace string) error {
	key := h.keys.Prefix + ":ns"
	if err := h.rdb.HSetNX(ctx, key, "keyspace", keyspace).Err(); err != nil {
		return fmt.Errorf("pairing namespace %s with keyspace %s: %w", h.keys.Prefix, keyspace, refused(err))
	}
	got, err := h.rdb.HGet(ctx, key, "keyspace").Result()
	if err != nil {
		return fmt.Errorf("pairing namespace %s with keyspace %s: %w", h.keys.Prefix, keyspace, err)
	}
	if got != keyspace {
		return fmt.Errorf("%w: namespace %s keeps its cold state in keyspace %s, not %s (pair another prefix with %s)",
			ErrPairing, h.keys.Prefix, got, keyspace, keyspace)
	}
	return nil
}
