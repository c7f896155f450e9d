package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/cmd/internal/ops"
)

// check runs the checks of the services named in args (all by default).
func check(ctx context.Context, conns config.Connections, healthTopic string, args []string, stdout io.Writer) error {
	which := "all"
	if len(args) > 0 {
		which = args[0]
	}
	if len(args) > 1 {
		// Flags stop at the first argument: flags after the service
		// would be ignored silently.
		// (The arguments are not echoed: one may be a password.)
		return fmt.Errorf("%d unexpected arguments after %q: flags go before the service", len(args)-1, which)
	}
	checks := map[string]func(context.Context) error{
		"kafka": func(ctx context.Context) error { return checkKafka(ctx, conns.Kafka, healthTopic) },
		"redis": func(ctx context.Context) error { return checkRedis(ctx, conns.Redis) },
		"cql":   func(ctx context.Context) error { return checkCQL(ctx, conns.CQL) },
	}
	order := []string{"kafka", "redis", "cql"}
	if which != "all" {
		if _, ok := checks[which]; !ok {
			return fmt.Errorf("unknown service %q (kafka, redis, cql or all)", which)
		}
		order = []string{which}
	}
	var errs []error
	for _, name := range order {
		if err := checks[name](ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		fmt.Fprintf(stdout, "%s: serving\n", name)
	}
	return errors.Join(errs...)
}

// checkKafka produces one record with acks=all and fetches it back by its
// offset: a broker that accepts connections but cannot serve a partition
// fails here.
func checkKafka(ctx context.Context, cfg config.Kafka, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	client, err := cfg.Client()
	if err != nil {
		return err
	}
	if err := ensureTopics(ctx, cfg, []topicSpec{{name: topic, partitions: 1}}, -1, io.Discard); err != nil {
		return err
	}
	payload := []byte("health-" + randomHex(8))
	var prod *kafka.ProduceResponse
	// A new topic's leader can take a moment to be elected.
	for {
		var err error
		prod, err = client.Produce(ctx, &kafka.ProduceRequest{
			Topic:        topic,
			Partition:    0,
			RequiredAcks: kafka.RequireAll,
			Records:      kafka.NewRecordReader(kafka.Record{Value: kafka.NewBytes(payload)}),
		})
		if err == nil && prod.Error != nil {
			err = prod.Error
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("producing to %s: %w", topic, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	fetch, err := client.Fetch(ctx, &kafka.FetchRequest{
		Topic: topic, Partition: 0, Offset: prod.BaseOffset, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: time.Second,
	})
	if err != nil {
		return fmt.Errorf("fetching from %s: %w", topic, err)
	}
	if fetch.Error != nil {
		return fmt.Errorf("fetching from %s: %w", topic, fetch.Error)
	}
	rec, err := fetch.Records.ReadRecord()
	if err != nil {
		return fmt.Errorf("reading the fetched record: %w", err)
	}
	got, err := io.ReadAll(rec.Value)
	if err != nil {
		return fmt.Errorf("reading the fetched record: %w", err)
	}
	if rec.Offset != prod.BaseOffset || !bytes.Equal(got, payload) {
		return fmt.Errorf("fetched offset %d %q, produced offset %d %q", rec.Offset, got, prod.BaseOffset, payload)
	}
	return nil
}

func checkRedis(ctx context.Context, cfg config.Redis) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rdb, err := cfg.Client()
	if err != nil {
		return err
	}
	defer rdb.Close()
	return ops.RedisHealth(ctx, rdb, true)
}

func checkCQL(ctx context.Context, cfg config.CQL) error {
	cluster, err := cfg.Cluster()
	if err != nil {
		return err
	}
	// One query answers the question; no need to discover the ring.
	cluster.DisableInitialHostLookup = true
	session, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer session.Close()
	var version string
	if err := session.Query("SELECT release_version FROM system.local").WithContext(ctx).Scan(&version); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if version == "" {
		return errors.New("query: empty release_version")
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
