package config

import (
	"context"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// DefaultMaxMessageBytes is Kafka's default max.message.bytes (1 MiB and
// a record batch's overhead), assumed when a topic's cannot be read.
const DefaultMaxMessageBytes = 1_048_588

// batchOverhead is left out of a topic's limit for the record batch's own
// header and the records' framing, which a writer's accounting omits.
const batchOverhead = 512

// BatchBytes returns how many bytes a writer may put in one partition's
// batch to topics: -kafka-max-message-bytes if set, else the smallest
// max.message.bytes of the topics, read from the brokers, less a record
// batch's overhead. A limit that cannot be read (no describe permission,
// an old broker) is taken as Kafka's default, and err says why; the
// returned bound is usable either way. A broker that still refuses a batch
// as too large makes the writers retry its messages one by one.
func (k Kafka) BatchBytes(ctx context.Context, topics ...string) (int64, error) {
	if k.MaxMessageBytes > 0 {
		return k.MaxMessageBytes, nil
	}
	limit, err := k.topicsMaxMessageBytes(ctx, topics)
	if err != nil {
		limit = DefaultMaxMessageBytes
	}
	return max(limit-batchOverhead, 1024), err
}

func (k Kafka) topicsMaxMessageBytes(ctx context.Context, topics []string) (int64, error) {
	client, err := k.Client()
	if err != nil {
		return 0, err
	}
	req := &kafka.DescribeConfigsRequest{}
	for _, t := range topics {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: t, ConfigNames: []string{"max.message.bytes"},
		})
	}
	resp, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("reading max.message.bytes of %v: %w", topics, err)
	}
	limit := int64(0)
	for _, r := range resp.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("reading max.message.bytes of %s: %w", r.ResourceName, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName != "max.message.bytes" {
				continue
			}
			v, err := strconv.ParseInt(e.ConfigValue, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("max.message.bytes of %s is %q", r.ResourceName, e.ConfigValue)
			}
			if limit == 0 || v < limit {
				limit = v
			}
		}
	}
	if limit == 0 {
		return 0, fmt.Errorf("no max.message.bytes for %v", topics)
	}
	return limit, nil
}
