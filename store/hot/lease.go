package hot

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// LeaseTTL is how long a lease outlives a holder that stopped renewing it:
// a process killed while recovering the hot tier or taking a snapshot
// blocks the others for at most this long.
const LeaseTTL = 10 * time.Second

// lease is a lock in the hot tier held by one process at a time. Its holder
// renews it every third of its time to live while it works and releases it when done; only
// the holder's token releases or renews it, so a holder whose lease expired
// (it stalled longer than LeaseTTL) cannot release the next holder's.
type lease struct {
	rdb   redis.UniversalClient
	key   string
	token string
	ttl   time.Duration
	stop  chan struct{}
	done  chan struct{}
}

var (
	renewScript   = script("lease_renew.lua")
	releaseScript = script("lease_release.lua")
)

// acquireLease takes the lease at key, for ttl at a time, if nobody holds
// it; ok is false if somebody does.
func acquireLease(ctx context.Context, rdb redis.UniversalClient, key string, ttl time.Duration) (l *lease, ok bool, err error) {
	token := newToken()
	got, err := rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil || !got {
		return nil, false, err
	}
	l = &lease{rdb: rdb, key: key, token: token, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	return l, true, nil
}

func (l *lease) renew() {
	defer close(l.done)
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	ttl := strconv.FormatInt(l.ttl.Milliseconds(), 10)
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
			// A failed renewal is tried again at the next tick; the lease
			// expires only if ttl passes without one.
			_ = renewScript.Run(ctx, l.rdb, []string{l.key}, l.token, ttl).Err()
			cancel()
		}
	}
}

// release stops the renewals and gives the lease up if it is still ours.
func (l *lease) release(ctx context.Context) {
	l.abandon()
	_ = releaseScript.Run(context.WithoutCancel(ctx), l.rdb, []string{l.key}, l.token).Err()
}

// abandon stops the renewals without releasing: what a killed holder
// leaves behind (for tests).
func (l *lease) abandon() {
	close(l.stop)
	<-l.done
}
