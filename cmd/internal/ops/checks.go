package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// KafkaCheck asks a broker for its API versions: a round trip to a live
// broker, not the client's metadata cache.
func KafkaCheck(brokers []string, transport kafka.RoundTripper) Check {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport}
	return Check{Name: "kafka", Run: func(ctx context.Context) error {
		resp, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if err != nil {
			return fmt.Errorf("api versions: %w", err)
		}
		return nil
	}}
}

// RedisCheck pings the hot tier: on a Redis Cluster, every node, each
// seeing every slot served.
func RedisCheck(rdb redis.UniversalClient) Check {
	return Check{Name: "redis", Run: func(ctx context.Context) error { return RedisHealth(ctx, rdb, false) }}
}

// CQLCheck queries the cold tier.
func CQLCheck(session *gocql.Session) Check {
	return Check{Name: "cql", Run: func(ctx context.Context) error {
		var v string
		if err := session.Query("SELECT release_version FROM system.local").WithContext(ctx).Scan(&v); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		if v == "" {
			return errors.New("query: empty release_version")
		}
		return nil
	}}
}

// Lag is consumer lag by partition of topic, from a worker's last fetches.
func Lag(topic string, lag func() map[int]int64) Func {
	return Func{
		Name: "consumer_lag", Help: "Records after the last batch fetched, by partition this process consumes.",
		Type: prometheus.GaugeValue, Labels: []string{"topic", "partition"},
		Read: func() []Value {
			var out []Value
			for p, n := range lag() {
				out = append(out, Value{V: float64(n), Labels: []string{topic, strconv.Itoa(p)}})
			}
			return out
		},
	}
}

// BatchHistograms registers the batch size and duration histograms of a
// component (ingest, score).
func BatchHistograms(reg prometheus.Registerer, component string) (records, seconds prometheus.Histogram) {
	labels := prometheus.Labels{"component": component}
	return Histogram(reg, "batch_records", "Records per batch.", RecordBuckets, labels),
		Histogram(reg, "batch_seconds", "Time from a batch's fetch to its commit (ingest) or acknowledged responses (score).", SecondsBuckets, labels)
}
