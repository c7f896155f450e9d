package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
)

var defaultTopicSpec = strings.Join([]string{
	config.TopicInteractions + ":6",
	config.TopicScoreRequests + ":6",
	config.TopicScoreResults + ":6",
	config.TopicInteractions + config.DLQSuffix + ":1",
	config.TopicScoreRequests + config.DLQSuffix + ":1",
}, ",")

type topicSpec struct {
	name       string
	partitions int
}

func parseTopicSpec(s string) ([]topicSpec, error) {
	var out []topicSpec
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, count, ok := strings.Cut(item, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("topic %q: want name:partitions", item)
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("topic %q: partitions must be a whole number ≥ 1", item)
		}
		out = append(out, topicSpec{name: name, partitions: n})
	}
	if len(out) == 0 {
		return nil, errors.New("no topics given")
	}
	return out, nil
}

// ensureTopics creates missing topics and grows partition counts that are
// too small. Shrinking is impossible in Kafka, so a larger count is left as
// it is.
func ensureTopics(ctx context.Context, cfg config.Kafka, topics []topicSpec, rf int, out io.Writer) error {
	client, err := cfg.Client()
	if err != nil {
		return err
	}
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = t.name
	}
	existing, err := partitionCounts(ctx, client, names)
	if err != nil {
		return err
	}
	var create []kafka.TopicConfig
	var grow []kafka.TopicPartitionsConfig
	for _, t := range topics {
		have, ok := existing[t.name]
		switch {
		case !ok:
			create = append(create, kafka.TopicConfig{Topic: t.name, NumPartitions: t.partitions, ReplicationFactor: rf})
		case have < t.partitions:
			grow = append(grow, kafka.TopicPartitionsConfig{Name: t.name, Count: int32(t.partitions)})
		default:
			fmt.Fprintf(out, "topic %s: exists with %d partitions\n", t.name, have)
		}
	}
	if len(create) > 0 {
		resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return fmt.Errorf("creating topics: %w", err)
		}
		for _, t := range create {
			if err := resp.Errors[t.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
				return fmt.Errorf("creating topic %s: %w", t.Topic, err)
			}
			fmt.Fprintf(out, "topic %s: created with %d partitions\n", t.Topic, t.NumPartitions)
		}
	}
	if len(grow) > 0 {
		resp, err := client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: grow})
		if err != nil {
			return fmt.Errorf("adding partitions: %w", err)
		}
		for _, g := range grow {
			if err := resp.Errors[g.Name]; err != nil {
				return fmt.Errorf("adding partitions to %s: %w", g.Name, err)
			}
			fmt.Fprintf(out, "topic %s: grown to %d partitions\n", g.Name, g.Count)
		}
	}
	return nil
}

// partitionCounts returns the partition count of each named topic that exists.
func partitionCounts(ctx context.Context, client *kafka.Client, names []string) (map[string]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("reading topic metadata: %w", err)
	}
	out := map[string]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				continue
			}
			return nil, fmt.Errorf("reading metadata of topic %s: %w", t.Name, t.Error)
		}
		out[t.Name] = len(t.Partitions)
	}
	return out, nil
}
