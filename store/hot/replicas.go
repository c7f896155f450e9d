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

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated means writes did not reach as many replicas as asked
// within the time given: the caller treats it as transient and does not
// count the writes as done.
var ErrNotReplicated = errors.New("store: writes not acknowledged by enough replicas")

// WaitReplicas returns once every write this process made before the call
// has reached at least n replicas of its master, on every master of a
// Redis Cluster (Redis WAIT), or ErrNotReplicated after timeout. Redis
// replicates asynchronously: a master killed before its replica has a
// write loses it when the replica is promoted. A writer that waits before
// committing its offsets commits only writes that survive a failover;
// the writes of a batch not yet waited for are redone from the last commit.
//
// WAIT counts the replication offset of the connection's own last write,
// so on each master a marker key is written and waited for on one
// connection: the marker's offset is past every earlier write to that
// master, whichever connection made it.
//
// It also returns the masters it waited on (their addresses): a writer
// that finds them changed since its previous call knows a failover
// happened between its writes and this wait, and that a promoted replica
// may have acknowledged the wait without having those writes.
func (h *Hot) WaitReplicas(ctx context.Context, n int, timeout time.Duration) (masters string, err error) {
	cc, ok := h.rdb.(*redis.ClusterClient)
	if !ok {
		c, ok := h.rdb.(*redis.Client)
		if !ok {
			return "", fmt.Errorf("waiting for replicas: a %T client is not supported", h.rdb)
		}
		return c.Options().Addr, waitNode(ctx, c, h.keys.Prefix+":replicated", n, timeout)
	}
	var mu sync.Mutex
	var addrs []string
	err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		mu.Lock()
		addrs = append(addrs, addr)
		mu.Unlock()
		marker, ok := h.markers.Load(addr)
		if !ok {
			key, err := KeyOnNode(ctx, c, h.keys.Prefix+":replicated")
			if err != nil {
				return fmt.Errorf("waiting for replicas of %s: %w", addr, err)
			}
			marker, _ = h.markers.LoadOrStore(addr, key)
		}
		err := waitNode(ctx, c, marker.(string), n, timeout)
		if err != nil && !errors.Is(err, ErrNotReplicated) {
			// The node may have lost the marker's slot (a failover, a
			// reshard): find another next time.
			h.markers.Delete(addr)
		}
		return err
	})
	slices.Sort(addrs)
	return strings.Join(addrs, ","), err
}

// waitNode writes marker on c and waits for n replicas to have it, on one
// connection (a pipeline holds one).
func waitNode(ctx context.Context, c *redis.Client, marker string, n int, timeout time.Duration) error {
	pipe := c.Pipeline()
	pipe.Set(ctx, marker, time.Now().UnixNano(), time.Hour)
	wait := pipe.Do(ctx, "WAIT", n, timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("waiting for replicas of %s: %w", c.Options().Addr, refused(err))
	}
	got, err := wait.Int()
	if err != nil {
		return fmt.Errorf("waiting for replicas of %s: %w", c.Options().Addr, err)
	}
	if got < n {
		return fmt.Errorf("%w: %s has %d of %d after %s", ErrNotReplicated, c.Options().Addr, got, n, timeout)
	}
	return nil
}

// KeyOnNode returns a key named after base, with a hash tag that puts it
// in a slot the cluster node c serves as a master (from its own view of
// the cluster), so that the key can be written on c directly.
func KeyOnNode(ctx context.Context, c *redis.Client, base string) (string, error) {
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
	if len(ranges) > 0 {
		// A master of three owns a third of the slots: a few tries find
		// one of its keys.
		for i := range 1 << 16 {
			key := base + "{" + strconv.Itoa(i) + "}"
			s := Slot(key)
			for _, r := range ranges {
				if s >= r[0] && s <= r[1] {
					return key, nil
				}
			}
		}
	}
	return "", errors.New("the node serves no slot")
}
