package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/store/hot"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
)

// How the simulator reaches the pipeline: its reply topic, the responses
// on it, and what it reads of the hot tier and the dead-letter topics.

func ensureTopic(ctx context.Context, client *kafka.Client, topic string) error {
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topic, NumPartitions: 1, ReplicationFactor: -1},
	}})
	if err != nil {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	if err := resp.Errors[topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	return nil
}

// readReplies reads the reply topic from its end until ctx ends.
func readReplies(ctx context.Context, brokers []string, dialer *kafka.Dialer, topic string, out chan<- *schemas.ScoreResponse) error {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond, Dialer: dialer})
	defer r.Close()
	if err := r.SetOffset(kafka.LastOffset); err != nil {
		return err
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return err
		}
		codec, err := schemas.CodecFor(headerValue(m.Headers, schemas.HeaderContentType))
		if err != nil {
			continue
		}
		resp := &schemas.ScoreResponse{}
		if err := codec.DecodeScoreResponse(schemas.DefaultLimits(), m.Value, resp); err != nil {
			continue
		}
		select {
		case out <- resp:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func headerValue(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// pipelineObserver reads the hot tier's sessions and the dead-letter
// topics' sizes (counted from the start of the run).
type pipelineObserver struct {
	rdb    redis.UniversalClient
	keys   hot.Keys
	client *kafka.Client
	dlq    []string
	base   int64
}

func (p *pipelineObserver) start(ctx context.Context) error {
	n, err := p.dlqSize(ctx)
	p.base = n
	return err
}

func (p *pipelineObserver) hot(ctx context.Context, users []string) ([]bool, error) {
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGet(ctx, p.keys.SessionKey(u), "l")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]bool, len(users))
	for i, c := range cmds {
		out[i] = c.Val() == "1"
	}
	return out, nil
}

func (p *pipelineObserver) deadLetters(ctx context.Context) (int64, error) {
	n, err := p.dlqSize(ctx)
	return n - p.base, err
}

func (p *pipelineObserver) dlqSize(ctx context.Context) (int64, error) {
	if len(p.dlq) == 0 {
		return 0, nil
	}
	meta, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: p.dlq})
	if err != nil {
		return 0, err
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range meta.Topics {
		if t.Error != nil {
			continue // a dead-letter topic that does not exist holds nothing
		}
		for _, part := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.FirstOffsetOf(part.ID), kafka.LastOffsetOf(part.ID))
		}
	}
	if len(req.Topics) == 0 {
		return 0, nil
	}
	resp, err := p.client.ListOffsets(ctx, req)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, parts := range resp.Topics {
		for _, po := range parts {
			if po.Error == nil {
				n += po.LastOffset - po.FirstOffset
			}
		}
	}
	return n, nil
}
