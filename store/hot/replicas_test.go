package hot_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/store/hot"
)

// WaitReplicas returns once each master's replicas have the writes made
// before it, and fails with ErrNotReplicated when fewer replicas than
// asked exist: the single Redis has none, each master of the local
// cluster has one.
func TestWaitReplicas(t *testing.T) {
	th := newTestHot(t)
	ctx := context.Background()
	replicas := 0
	if _, ok := th.rdb.(*redis.ClusterClient); ok {
		replicas = 1
	}
	if _, err := th.h.WaitReplicas(ctx, 0, time.Second); err != nil {
		t.Fatalf("waiting for no replica: %v", err)
	}
	if replicas > 0 {
		masters, err := th.h.WaitReplicas(ctx, replicas, 5*time.Second)
		if err != nil {
			t.Fatalf("waiting for %d replica of each master: %v", replicas, err)
		}
		if n := len(strings.Split(masters, ",")); n != 3 {
			t.Fatalf("waited on masters %q, want the 3 of the cluster", masters)
		}
		// Every master was asked: each holds a marker key.
		if n := len(stacktest.Keys(t, th.rdb, th.h.Keys().Prefix+":replicated*")); n != 3 {
			t.Fatalf("%d marker keys, want one on each of the 3 masters", n)
		}
	}
	_, err := th.h.WaitReplicas(ctx, replicas+1, 100*time.Millisecond)
	if !errors.Is(err, hot.ErrNotReplicated) {
		t.Fatalf("waiting for %d replicas where there are %d: %v, want ErrNotReplicated", replicas+1, replicas, err)
	}
}
