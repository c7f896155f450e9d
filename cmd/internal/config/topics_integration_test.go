package config_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/deploy/local/stacktest"
)

// A writer's batch bound is read from the topics' max.message.bytes (the
// smallest), less a batch's overhead; -kafka-max-message-bytes overrides
// it; a topic that cannot be described gives Kafka's default and an error.
func TestBatchBytesFollowTheTopics(t *testing.T) {
	brokers := stacktest.KafkaBrokers(t)
	small := stacktest.UniqueName("it_small")
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	ctx := context.Background()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: small, NumPartitions: 1, ReplicationFactor: -1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: "200000"}}}}})
	if err != nil || res.Errors[small] != nil {
		t.Fatalf("creating %s: %v %v", small, err, res.Errors[small])
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{small}})
	})
	other := stacktest.CreateTopic(t, brokers, "it_default", 1)

	k := config.Kafka{Brokers: brokers, Timeout: 10 * time.Second}
	if got, err := k.BatchBytes(ctx, other, small); err != nil || got != 200000-512 {
		t.Fatalf("batch bytes %d, %v; want the smaller topic's 200000 less 512", got, err)
	}
	k.MaxMessageBytes = 4096
	if got, err := k.BatchBytes(ctx, small); err != nil || got != 4096 {
		t.Fatalf("batch bytes %d, %v with the flag; want 4096", got, err)
	}
	k.MaxMessageBytes = 0
	if got, err := k.BatchBytes(ctx, "it_no_such_topic_x"); err == nil || got != config.DefaultMaxMessageBytes-512 {
		t.Fatalf("batch bytes %d, %v for a missing topic; want the default and an error", got, err)
	}
}
