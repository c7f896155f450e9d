package hot_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/store/hot"
)

// testHot is a hot tier in a namespace of its own on the local Redis,
// recovered once (so it has an epoch), with its client.
type testHot struct {
	rdb   redis.UniversalClient
	h     *hot.Hot
	epoch string
}

func newTestHot(t *testing.T) testHot {
	t.Helper()
	rdb := stacktest.Redis(t)
	h, err := hot.New(rdb, hot.Keys{Prefix: stacktest.UniqueName("it"), Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := h.Recover(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return testHot{rdb, h, epoch}
}
