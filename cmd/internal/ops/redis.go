package ops

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/banditstream/banditstream/store/hot"
	"github.com/redis/go-redis/v9"
)

// RedisHealth checks the hot tier: the server answers or, on a Redis
// Cluster, every node answers and sees every slot served. With write, it
// also writes a short-lived key (on every master of a cluster, in a slot
// that master owns): a server out of memory under noeviction still answers
// PING, a write shows it can take counts.
func RedisHealth(ctx context.Context, rdb redis.UniversalClient, write bool) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		if write {
			if err := rdb.Set(ctx, "{banditstream}:health", time.Now().UnixNano(), time.Minute).Err(); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		return nil
	}
	if err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		info, err := c.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %s: cluster info: %w", c.Options().Addr, err)
		}
		if state := infoField(info, "cluster_state"); state != "ok" {
			return fmt.Errorf("node %s: cluster_state %q, not ok (a master is down or slots are not covered)", c.Options().Addr, state)
		}
		return nil
	}); err != nil {
		return err
	}
	if !write {
		return nil
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		key, err := hot.KeyOnNode(ctx, c, "banditstream-health")
		if err != nil {
			return fmt.Errorf("node %s: %w", c.Options().Addr, err)
		}
		if err := c.Set(ctx, key, time.Now().UnixNano(), time.Minute).Err(); err != nil {
			return fmt.Errorf("node %s: write: %w", c.Options().Addr, err)
		}
		return nil
	})
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
