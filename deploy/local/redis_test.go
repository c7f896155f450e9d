package local_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

func newRedis(t *testing.T) redis.UniversalClient {
	t.Helper()
	return stacktest.Redis(t)
}

// One pipeline round trip answers hits with values and misses with
// redis.Nil, each command on its own.
func TestRedisPipelineHitsAndMisses(t *testing.T) {
	rdb := newRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tag := "{" + stacktest.UniqueName("it") + "}"
	hits := map[string]string{tag + ":a": "1", tag + ":b": "2", tag + ":c": "3"}
	for k, v := range hits {
		if err := rdb.Set(ctx, k, v, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{tag + ":a", tag + ":missing-1", tag + ":b", tag + ":c", tag + ":missing-2"}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	// Exec returns the first command error (redis.Nil for a miss); each
	// command's own result is what counts.
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("pipeline: %v", err)
	}
	for i, k := range keys {
		v, err := cmds[i].Result()
		want, hit := hits[k]
		switch {
		case hit && (err != nil || v != want):
			t.Errorf("%s: got %q, %v; want %q", k, v, err, want)
		case !hit && !errors.Is(err, redis.Nil):
			t.Errorf("%s: got %q, %v; want redis.Nil", k, v, err)
		}
	}
}

// applyAbove adds delta to a counter only when offset is above the stored
// watermark, and moves the watermark, in one atomic script: the shape of
// exactly-once-in-effect counting. Both keys share a hash tag (one slot).
var applyAbove = redis.NewScript(`
local wm = tonumber(redis.call('HGET', KEYS[1], 'watermark') or '-1')
local off = tonumber(ARGV[1])
if off <= wm then return 0 end
redis.call('HINCRBY', KEYS[2], 'count', ARGV[2])
redis.call('HSET', KEYS[1], 'watermark', off)
return 1
`)

func TestRedisLuaScript(t *testing.T) {
	rdb := newRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tag := "{" + stacktest.UniqueName("it") + "}"
	keys := []string{tag + ":wm", tag + ":arm"}
	t.Cleanup(func() { rdb.Del(context.Background(), keys...) })

	// Evict the script cache so the first Run goes through EVALSHA's
	// NOSCRIPT fallback to EVAL.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		offset, delta int64
		applied       int64
	}{
		{0, 5, 1},
		{1, 2, 1},
		{1, 2, 0}, // redelivered
		{0, 5, 0}, // replayed
		{7, 1, 1},
	}
	for _, s := range steps {
		got, err := applyAbove.Run(ctx, rdb, keys, s.offset, s.delta).Int64()
		if err != nil {
			t.Fatalf("offset %d: %v", s.offset, err)
		}
		if got != s.applied {
			t.Errorf("offset %d: applied=%d, want %d", s.offset, got, s.applied)
		}
	}
	count, err := rdb.HGet(ctx, keys[1], "count").Int64()
	if err != nil || count != 8 {
		t.Fatalf("count = %d, %v; want 8", count, err)
	}
}
