package hot

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// AbandonLease takes the lease at key and stops renewing it without
// releasing it, as a holder killed mid-work would.
func AbandonLease(ctx context.Context, rdb redis.UniversalClient, key string, ttl time.Duration) (bool, error) {
	l, ok, err := acquireLease(ctx, rdb, key, ttl)
	if ok {
		l.abandon()
	}
	return ok, err
}

// HoldLease takes the lease at key and returns its release; the lease is
// renewed until then.
func HoldLease(ctx context.Context, rdb redis.UniversalClient, key string, ttl time.Duration) (release func(), ok bool, err error) {
	l, ok, err := acquireLease(ctx, rdb, key, ttl)
	if !ok {
		return nil, ok, err
	}
	return func() { l.release(ctx) }, true, nil
}

// StallLoad stops renewing the session-load lock token holds, as a loader
// that stalls (a long pause, SIGSTOP) would.
func StallLoad(h *Hot, token string) { h.stopRenewing(token) }

// LoadsHeld is the number of session-load locks h renews.
func LoadsHeld(h *Hot) int {
	n := 0
	h.loads.Range(func(any, any) bool { n++; return true })
	return n
}
