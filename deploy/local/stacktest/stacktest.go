// Package stacktest gives integration tests the addresses of the real local
// stack that deploy/local/stack.sh starts (Kafka, Redis, Cassandra) and
// helpers to make isolated topics and keyspaces on it. Only tests import it.
//
// When a service does not answer, the test fails: the suite must never pass
// by skipping its integration tests (make test starts the stack). Only
// go test -short (make test-unit) skips them.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banditstream/banditstream/store/cold"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// Env names of the addresses; the same variables the binaries read.
const (
	EnvKafka = "BANDITSTREAM_KAFKA_BROKERS"
	EnvRedis = "BANDITSTREAM_REDIS_ADDR"
	EnvCQL   = "BANDITSTREAM_CQL_HOSTS"
)

func addr(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

func need(t testing.TB, service, hostport string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs " + service + "; not run with -short")
	}
	conn, err := net.DialTimeout("tcp", strings.Split(hostport, ",")[0], 2*time.Second)
	if err != nil {
		t.Fatal(service + " is not reachable at " + hostport + " (start it with make up): " + err.Error())
	}
	conn.Close()
}

// KafkaBrokers returns the brokers of the local Kafka, or fails.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	a := addr(EnvKafka, "127.0.0.1:9092")
	need(t, "Kafka", a)
	return strings.Split(a, ",")
}

// RedisAddr returns the address of the local Redis, or fails.
func RedisAddr(t testing.TB) string {
	t.Helper()
	a := addr(EnvRedis, "127.0.0.1:6379")
	need(t, "Redis", a)
	return a
}

// Redis returns a client for the local hot tier, closed when the test
// ends: a Redis Cluster client when the address lists several nodes.
func Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	return NewRedis(t, RedisAddr(t))
}

// NewRedis returns a client for the hot tier at addr (nodes comma
// separated), closed when the test ends.
func NewRedis(t testing.TB, addr string) redis.UniversalClient {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(addr, ",")})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Topology is the local stack's topology the environment names (stack.sh
// env prints it): single or cluster.
func Topology() string { return addr("TOPOLOGY", "single") }

// NeedCluster skips a test of the cluster topology (a failover) on the
// single-node one.
func NeedCluster(t testing.TB) {
	t.Helper()
	if Topology() != "cluster" {
		t.Skip("needs the cluster topology (TOPOLOGY=cluster): replicas to fail over to")
	}
}

// skipOnCluster skips a test of a listener only the single broker has.
func skipOnCluster(t testing.TB, what string) {
	t.Helper()
	if Topology() == "cluster" {
		t.Skip(what + " is the single-node broker's (TOPOLOGY=single); the cluster's brokers listen in plaintext")
	}
}

// CQLHosts returns the contact points of the local Cassandra, or fails.
func CQLHosts(t testing.TB) []string {
	t.Helper()
	a := addr(EnvCQL, "127.0.0.1:9042")
	need(t, "Cassandra", a)
	return strings.Split(a, ",")
}

// The local Cassandra's credentials, unless the environment names others:
// the defaults of deploy/local/versions.env.
const (
	EnvCQLUsername = "BANDITSTREAM_CQL_USERNAME"
	EnvCQLPassword = "BANDITSTREAM_CQL_PASSWORD"
)

// CQLCredentials returns the user and password of the local Cassandra.
func CQLCredentials() (string, string) {
	return addr(EnvCQLUsername, "cassandra"), addr(EnvCQLPassword, "cassandra")
}

// CQLEnv returns the credentials as environment variables for a binary
// (StartProcess adds them to every process it starts).
func CQLEnv() []string {
	u, p := CQLCredentials()
	return []string{EnvCQLUsername + "=" + u, EnvCQLPassword + "=" + p}
}

// KafkaSASL returns the local broker's SASL/PLAIN listener and its user,
// or fails (the defaults of deploy/local/versions.env).
func KafkaSASL(t testing.TB) (broker, user, password string) {
	t.Helper()
	skipOnCluster(t, "Kafka's SASL listener")
	broker = addr("KAFKA_SASL_BROKER", "127.0.0.1:9094")
	need(t, "Kafka's SASL listener", broker)
	return broker, addr("KAFKA_SASL_USER", "banditstream"), addr("KAFKA_SASL_PASSWORD", "banditstream-local-sasl")
}

// KafkaSCRAM returns the local broker's TLS listener with SASL/SCRAM-SHA-512,
// its user, and the PEM certificate to trust, or fails (the defaults of
// deploy/local/versions.env).
func KafkaSCRAM(t testing.TB) (broker, user, password, caFile string) {
	t.Helper()
	skipOnCluster(t, "Kafka's TLS listener")
	broker = addr("KAFKA_SSL_BROKER", "127.0.0.1:9095")
	need(t, "Kafka's TLS listener", broker)
	return broker, addr("KAFKA_SCRAM_USER", "banditstream-scram"), addr("KAFKA_SCRAM_PASSWORD", "banditstream-local-scram"), LocalCA(t)
}

// localDir is where stack.sh keeps its state.
func localDir() string {
	if dir := os.Getenv("BANDITSTREAM_LOCAL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(moduleRoot(), ".local")
}

// Signal sends sig to a service of the local stack (SIGSTOP pauses it,
// SIGCONT resumes it), by the pid stack.sh recorded.
func Signal(t testing.TB, service string, sig syscall.Signal) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(localDir(), service, "server.pid"))
	if err != nil {
		t.Fatalf("the pid of %s: %v", service, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("the pid file of %s holds %q", service, b)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signalling %s (pid %d) with %v: %v", service, pid, sig, err)
	}
}

// LocalCA returns the PEM certificate of the local stack's TLS listeners
// (Kafka's SASL_SSL listener, Cassandra's native port), made by stack.sh.
func LocalCA(t testing.TB) string {
	t.Helper()
	ca := filepath.Join(localDir(), "tls", "ca.pem")
	if _, err := os.Stat(ca); err != nil {
		t.Fatal("the local TLS certificate is missing (make up makes it): " + err.Error())
	}
	return ca
}

// CQLCluster returns a driver configuration for the local Cassandra, logged
// in, with a timeout for a shared machine.
func CQLCluster(t testing.TB) *gocql.ClusterConfig {
	t.Helper()
	cluster := gocql.NewCluster(CQLHosts(t)...)
	cluster.Timeout = 20 * time.Second
	cluster.ConnectTimeout = 20 * time.Second
	u, p := CQLCredentials()
	cluster.Authenticator = gocql.PasswordAuthenticator{Username: u, Password: p}
	return cluster
}

// UniqueName returns prefix followed by a random suffix, valid as a topic,
// keyspace or key prefix ([a-z0-9_]).
func UniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// CreateTopic creates a fresh topic with the given partition count and
// deletes it when the test ends.
func CreateTopic(t testing.TB, brokers []string, prefix string, partitions int) string {
	t.Helper()
	name := UniqueName(prefix)
	CreateTopicNamed(t, brokers, name, partitions)
	return name
}

func waitForLeaders(ctx context.Context, t testing.TB, client *kafka.Client, topic string, partitions int) {
	t.Helper()
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ready := true
			for _, p := range md.Topics[0].Partitions {
				if p.Error != nil || p.Leader.ID < 0 {
					ready = false
				}
			}
			if ready {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s has no leaders: %v", topic, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CreateTopicNamed creates the topic name (for a dead-letter topic that
// goes with one from CreateTopic) and deletes it when the test ends.
func CreateTopicNamed(t testing.TB, brokers []string, name string, partitions int) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: -1,
	}}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	waitForLeaders(ctx, t, client, name, partitions)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
	})
}

// EnvFaults is the variable that, set to 1, lets fault tests run: they
// stop shared services, so make test runs them apart, one package at a
// time.
const EnvFaults = "BANDITSTREAM_FAULT_TESTS"

// NeedFaults skips a fault test unless EnvFaults is 1.
func NeedFaults(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvFaults) != "1" {
		t.Skip("stops shared services; set " + EnvFaults + "=1 (make test does, before the other tests)")
	}
}

// Stack runs deploy/local/stack.sh with args (stop redis, start redis,
// kill redis, ...), failing the test if it fails.
func Stack(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(moduleRoot(), "deploy", "local", "stack.sh"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("stack.sh %v: %v\n%s", args, err, out)
	}
}

// OpenCold opens a session on the local Cassandra at LOCAL_QUORUM, closed
// when the test ends, and the cold tier of namespace (the hot tier's key
// prefix) in keyspace, migrated first; with drop, the keyspace is dropped
// when the test ends.
func OpenCold(t testing.TB, keyspace, namespace string, drop bool) (*cold.Cold, *gocql.Session) {
	t.Helper()
	cluster := CQLCluster(t)
	cluster.Consistency = gocql.LocalQuorum
	session, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(session.Close)
	c, err := NewCold(context.Background(), session, cold.Config{Keyspace: keyspace, Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	if drop {
		t.Cleanup(func() { _ = session.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec() })
	}
	return c, session
}

// NewCold applies the cold tier's schema in cfg's keyspace and returns the
// cold tier on session, as a daemon started with -cql-migrate does.
func NewCold(ctx context.Context, session *gocql.Session, cfg cold.Config) (*cold.Cold, error) {
	if err := cold.Migrate(ctx, session, cfg); err != nil {
		return nil, err
	}
	return cold.New(session, cfg)
}

// Keys returns the keys of the hot tier matching pattern, scanned on every
// master of a Redis Cluster (a SCAN through a cluster client reaches one
// node only).
func Keys(t testing.TB, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		t.Fatalf("scanning %s: %v", pattern, err)
	}
	return keys
}

// DeleteKeys deletes the keys of the hot tier matching pattern (a lost hot
// tier) and returns how many there were.
func DeleteKeys(t testing.TB, rdb redis.UniversalClient, pattern string) int {
	t.Helper()
	keys := Keys(t, rdb, pattern)
	for _, k := range keys {
		if err := rdb.Del(context.Background(), k).Err(); err != nil {
			t.Fatalf("deleting %s: %v", k, err)
		}
	}
	return len(keys)
}
