package ops

import (
	"context"
	"fmt"
	"strconv"
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
		key, err := ownedKey(ctx, c)
		if err != nil {
			return fmt.Errorf("node %s: %w", c.Options().Addr, err)
		}
		if err := c.Set(ctx, key, time.Now().UnixNano(), time.Minute).Err(); err != nil {
			return fmt.Errorf("node %s: write: %w", c.Options().Addr, err)
		}
		return nil
	})
}

// ownedKey is a health key in a slot the master c owns, from its own view
// of the cluster.
func ownedKey(ctx context.Context, c *redis.Client) (string, error) {
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("cluster nodes: %w", err)
	}
	var ranges [][2]int
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !strings.Contains(f[2], "myself") {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") { // a slot being migrated
				continue
			}
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				ranges = append(ranges, [2]int{a, b})
			}
		}
	}
	// A master owns a third of the slots on a cluster of three: a few
	// tries find one of its keys.
	for i := range 1 << 16 {
		key := "{banditstream-health-" + strconv.Itoa(i) + "}"
		s := hot.Slot(key)
		for _, r := range ranges {
			if s >= r[0] && s <= r[1] {
				return key, nil
			}
		}
	}
	return "", fmt.Errorf("the node owns no slot")
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
