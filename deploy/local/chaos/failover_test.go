package chaos_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"github.com/banditstream/banditstream/store/hot"
)

// Failovers of the cluster topology: a Redis Cluster master and a Kafka
// partition leader killed with SIGKILL under load.

// A Redis Cluster master is killed under load: the cluster promotes its
// replica, which lacks the master's last writes (replication is
// asynchronous; here the replica is paused for lag seconds before the
// kill, so it lacks that much). Ingest waits for each batch's writes to
// reach a replica before committing it (-redis-wait-replicas 1): what the
// replica lacks was never committed, and is redone from the promoted
// replica's watermarks, so counts and users end exact. (Without the wait,
// the counts of the lag's committed events are lost.) The killed node
// comes back as a replica.
func TestFaultChaosRedisMasterFailover(t *testing.T) {
	stacktest.NeedCluster(t)
	s := newSystem(t, 6)
	wait := []string{"-redis-wait-replicas", "1"}
	s.startIngest(wait...)
	s.startIngest(wait...)
	s.startScorer()
	s.run(steady)
	time.Sleep(time.Duration(sized(5, 15)) * time.Second)
	victim, port, replica := s.redisMaster(t)
	t.Cleanup(func() { stacktest.Stack(t, "start", victim) })
	const lag = 1500 * time.Millisecond
	stacktest.Signal(t, replica, syscall.SIGSTOP)
	t.Cleanup(func() { stacktest.Signal(t, replica, syscall.SIGCONT) })
	s.clogReplication(t, port)
	time.Sleep(lag)
	killed := time.Now()
	stacktest.Stack(t, "kill", victim)
	stacktest.Signal(t, replica, syscall.SIGCONT)
	promoted := s.waitRedisServing(t, port)
	time.Sleep(time.Duration(sized(3, 10)) * time.Second)
	stacktest.Stack(t, "start", victim) // rejoins as its replica's replica
	time.Sleep(time.Duration(sized(3, 10)) * time.Second)
	s.settle("Redis master killed", fmt.Sprintf("SIGKILL of %s, its replica %s paused %s before; serving after %s", victim, replica, lag, promoted.Sub(killed).Round(100*time.Millisecond)))
}

// The leader of a partition of the events topic is killed under load:
// the other two brokers hold every acknowledged record (acks=all,
// min.insync.replicas=2), a new leader is elected, producers and
// consumers follow it; the broker comes back and catches up.
func TestFaultChaosKafkaLeaderKill(t *testing.T) {
	stacktest.NeedCluster(t)
	s := newSystem(t, 6)
	s.startIngest()
	s.startIngest()
	s.startScorer()
	s.startScorer()
	s.run(steady)
	time.Sleep(5 * time.Second)
	victim := s.kafkaLeader(t, s.events, 0)
	t.Cleanup(func() { stacktest.Stack(t, "start", victim) })
	stacktest.Stack(t, "kill", victim)
	down := sized(8, 20)
	time.Sleep(time.Duration(down) * time.Second)
	stacktest.Stack(t, "start", victim)
	time.Sleep(5 * time.Second)
	s.settle("Kafka partition leader killed", fmt.Sprintf("SIGKILL of %s (leader of %s/0), down %d s", victim, "events", down))
}

// redisMaster returns the stack's name of a master of the Redis Cluster
// (the one serving slot 0), its address and the name of its replica.
func (s *system) redisMaster(t *testing.T) (name, addr, replica string) {
	t.Helper()
	rdb := stacktest.NewRedis(t, s.redis)
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("the hot tier at %s is not a cluster", s.redis)
	}
	shards, err := cc.ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var replicaAddr string
	for _, sh := range shards {
		if !slices.ContainsFunc(sh.Slots, func(r redis.SlotRange) bool { return r.Start == 0 }) {
			continue
		}
		for _, n := range sh.Nodes {
			switch {
			case n.Health != "online":
			case n.Role == "master":
				addr = nodeAddr(n)
			case replicaAddr == "":
				replicaAddr = nodeAddr(n)
			}
		}
	}
	for i, a := range strings.Split(s.redis, ",") {
		switch a {
		case addr:
			name = "redis-" + strconv.Itoa(i+1)
		case replicaAddr:
			replica = "redis-" + strconv.Itoa(i+1)
		}
	}
	if name == "" || replica == "" {
		t.Fatalf("the master of slot 0 (%q) or its replica (%q) is none of the stack's nodes %s", addr, replicaAddr, s.redis)
	}
	return name, addr, replica
}

// clogReplication writes a value larger than the socket buffers between
// the master at addr and its paused replica, so that what the master
// writes next waits in the master's own memory and dies with it: the
// replica promoted lacks it, as one lagging on a real network would.
func (s *system) clogReplication(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx := context.Background()
	key, err := hot.KeyOnNode(ctx, c, s.prefix+":clog")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, key, strings.Repeat("x", 32<<20), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
}

// waitRedisServing waits until the cluster serves every slot again without
// the node at gone (its replica promoted) and returns when.
func (s *system) waitRedisServing(t *testing.T, gone string) time.Time {
	t.Helper()
	var other string
	for _, a := range strings.Split(s.redis, ",") {
		if a != gone {
			other = a
			break
		}
	}
	c := redis.NewClient(&redis.Options{Addr: other})
	defer c.Close()
	ctx := context.Background()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		shards, err := c.ClusterShards(ctx).Result()
		if err != nil {
			continue
		}
		info, _ := c.ClusterInfo(ctx).Result()
		served := int64(0)
		for _, sh := range shards {
			for _, n := range sh.Nodes {
				if n.Role == "master" && n.Health == "online" && nodeAddr(n) != gone {
					for _, r := range sh.Slots {
						served += r.End - r.Start + 1
					}
				}
			}
		}
		if served == 16384 && strings.Contains(info, "cluster_state:ok") {
			return time.Now()
		}
	}
	t.Fatalf("no replica took over from %s within a minute", gone)
	return time.Time{}
}

func nodeAddr(n redis.Node) string { return n.IP + ":" + strconv.FormatInt(n.Port, 10) }

// kafkaLeader returns the stack's name of the broker leading partition of
// topic.
func (s *system) kafkaLeader(t *testing.T, topic string, partition int) string {
	t.Helper()
	conn, err := kafka.Dial("tcp", s.brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if p.ID == partition {
			return "kafka-" + strconv.Itoa(p.Leader.ID)
		}
	}
	t.Fatalf("no partition %d of %s", partition, topic)
	return ""
}

// Slots move between masters under load (redis-cli --cluster reshard):
// keys of a slot being migrated answer with ASK or TRYAGAIN until the slot
// is done, and MOVED after; clients follow, and counts and users end
// exact. A third of the first master's slots go to the second, then back.
func TestFaultChaosRedisReshard(t *testing.T) {
	stacktest.NeedCluster(t)
	s := newSystem(t, 6)
	s.startIngest()
	s.startIngest()
	s.startScorer()
	s.run(steady)
	time.Sleep(5 * time.Second)
	masters := s.redisMasterIDs(t)
	if len(masters) < 2 {
		t.Fatalf("%d masters, want at least 2", len(masters))
	}
	slots := sized(1000, 3000)
	start := time.Now()
	s.reshard(t, masters[0], masters[1], slots)
	time.Sleep(2 * time.Second)
	s.reshard(t, masters[1], masters[0], slots)
	took := time.Since(start).Round(time.Second)
	time.Sleep(3 * time.Second)
	s.settle("Redis slots resharded", fmt.Sprintf("%d slots moved to another master and back, %s", slots, took))
}

// redisMasterIDs returns the node ids of the cluster's masters serving
// slots, by address.
func (s *system) redisMasterIDs(t *testing.T) []string {
	t.Helper()
	rdb := stacktest.NewRedis(t, s.redis)
	shards, err := rdb.(*redis.ClusterClient).ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			if n.Role == "master" && n.Health == "online" && len(sh.Slots) > 0 {
				ids = append(ids, n.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// reshard moves n slots from the master from to the master to, keys and
// all, with redis-cli.
func (s *system) reshard(t *testing.T, from, to string, n int) {
	t.Helper()
	entry := strings.Split(s.redis, ",")[0]
	out, err := exec.Command("redis-cli", "--cluster", "reshard", entry, "--cluster-from", from, "--cluster-to", to,
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes").CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster reshard: %v\n%s", err, lastLines(string(out), 20))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
