package hot_test

import (
	"context"
	"testing"
	"time"

	"github.com/banditstream/banditstream/store/hot"
)

// A recoverer killed half-way (its lease left behind, no longer renewed)
// holds the next recovery up for at most hot.LeaseTTL; a live holder's
// lease outlasts its time to live because it is renewed, and only its
// holder releases it.
func TestLeases(t *testing.T) {
	ctx := context.Background()
	e := newTestHot(t)
	key := e.h.Keys().Prefix + ":recover-lock"
	if ok, err := hot.AbandonLease(ctx, e.rdb, key, hot.LeaseTTL); !ok || err != nil {
		t.Fatalf("taking the lease: %v, %v", ok, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 3*hot.LeaseTTL)
	defer cancel()
	// While a recovery runs, its lock would outlive a killed holder by
	// LeaseTTL at most.
	var ttl time.Duration
	epoch, err := e.h.RecoverWith(rctx, e.epoch, func(string) error {
		var err error
		ttl, err = e.rdb.PTTL(ctx, key).Result()
		return err
	})
	if err != nil || epoch == "" || epoch == e.epoch {
		t.Fatalf("recovery after an abandoned lease: epoch %q (was %q), %v", epoch, e.epoch, err)
	}
	if ttl <= 0 || ttl > hot.LeaseTTL {
		t.Fatalf("the recovery lock lives %s without renewal; want at most %s", ttl, hot.LeaseTTL)
	}

	const short = 600 * time.Millisecond
	other := e.h.Keys().Prefix + ":test-lease"
	release, ok, err := hot.HoldLease(ctx, e.rdb, other, short)
	if !ok || err != nil {
		t.Fatalf("taking a lease: %v, %v", ok, err)
	}
	time.Sleep(3 * short)
	if _, ok, _ := hot.HoldLease(ctx, e.rdb, other, short); ok {
		t.Fatal("a held lease expired although its holder renews it")
	}
	release()
	if n, err := e.rdb.Exists(ctx, other).Result(); err != nil || n != 0 {
		t.Fatalf("released lease still there: %d, %v", n, err)
	}
	// An abandoned lease expires by itself.
	if ok, err := hot.AbandonLease(ctx, e.rdb, other, short); !ok || err != nil {
		t.Fatalf("taking the lease again: %v, %v", ok, err)
	}
	time.Sleep(2 * short)
	if n, err := e.rdb.Exists(ctx, other).Result(); err != nil || n != 0 {
		t.Fatalf("abandoned lease still there after twice its time to live: %d, %v", n, err)
	}
}
