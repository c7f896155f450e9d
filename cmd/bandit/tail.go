package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/cmd/internal/config"
	"github.com/banditstream/banditstream/consumers"
	"github.com/banditstream/banditstream/schemas"
)

// tailCommand prints a topic's records as JSON lines: position, key, the
// dead-letter headers, and the value decoded into its JSON form.
func tailCommand(fs *flag.FlagSet, conns *config.Connections) func(context.Context, io.Reader, io.Writer, io.Writer) error {
	k := &conns.Kafka
	topic := fs.String("topic", config.TopicScoreResults, "topic to read")
	kind := fs.String("kind", "auto", "what the values are: event, request, response, decision, or auto (from the topic's name; a dead-letter topic's from its source's)")
	from := fs.String("from", "end", "where to start in each partition: beginning, end, or a number n for the last n records")
	follow := fs.Bool("follow", false, "keep printing new records until interrupted (otherwise stop at the end)")
	return func(ctx context.Context, _ io.Reader, stdout, stderr io.Writer) error {
		decode, err := valueDecoder(*kind, *topic)
		if err != nil {
			return err
		}
		client, dialer, err := k.Clients()
		if err != nil {
			return err
		}
		ranges, err := partitionRanges(ctx, client, *topic)
		if err != nil {
			return err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make([]error, len(ranges))
		for i, pr := range ranges {
			start, err := pr.start(*from)
			if err != nil {
				return err
			}
			if !*follow && start >= pr.last {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Topic: *topic, Partition: pr.partition, MaxWait: 200 * time.Millisecond, MaxBytes: 16 << 20, Dialer: dialer})
				defer r.Close()
				if err := r.SetOffset(start); err != nil {
					errs[i] = err
					return
				}
				for *follow || r.Offset() < pr.last {
					m, err := r.ReadMessage(ctx)
					if err != nil {
						if ctx.Err() == nil {
							errs[i] = err
						}
						return
					}
					line := render(m, decode)
					mu.Lock()
					fmt.Fprintf(stdout, "%s\n", line)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

type partitionRange struct {
	partition   int
	first, last int64 // last is the offset after the newest record
}

func (p partitionRange) start(from string) (int64, error) {
	switch from {
	case "beginning":
		return p.first, nil
	case "end":
		return p.last, nil
	}
	var n int64
	if _, err := fmt.Sscan(from, &n); err != nil || n < 0 {
		return 0, fmt.Errorf("-from: %q is not beginning, end or a number of records", from)
	}
	return max(p.first, p.last-n), nil
}

// partitionRanges returns every partition of topic with its first offset
// and the offset after its newest record.
func partitionRanges(ctx context.Context, client *kafka.Client, topic string) ([]partitionRange, error) {
	ranges, err := consumers.PlanReplay(ctx, client, topic, nil, consumers.Earliest, consumers.End)
	if err != nil {
		return nil, err
	}
	out := make([]partitionRange, len(ranges))
	for i, r := range ranges {
		out[i] = partitionRange{partition: r.Partition, first: r.From, last: r.To}
	}
	return out, nil
}

// valueDecoder returns the function that turns a value into its JSON form.
func valueDecoder(kind, topic string) (func(codec schemas.Codec, v []byte) ([]byte, error), error) {
	if kind == "auto" {
		name := strings.TrimSuffix(topic, ".dlq")
		switch {
		case strings.Contains(name, "request"):
			kind = "request"
		case strings.Contains(name, "result") || strings.Contains(name, "repl"):
			kind = "response"
		case strings.Contains(name, "decision"):
			kind = "decision"
		default:
			kind = "event"
		}
	}
	lim := schemas.DefaultLimits()
	switch kind {
	case "event":
		return func(c schemas.Codec, v []byte) ([]byte, error) {
			m := &schemas.Interaction{}
			if err := c.DecodeInteraction(lim, v, m); err != nil {
				return nil, err
			}
			return schemas.JSON.AppendInteraction(nil, m)
		}, nil
	case "request":
		return func(c schemas.Codec, v []byte) ([]byte, error) {
			m := &schemas.ScoreRequest{}
			if err := c.DecodeScoreRequest(lim, v, m); err != nil {
				return nil, err
			}
			return schemas.JSON.AppendScoreRequest(nil, m)
		}, nil
	case "response":
		return func(c schemas.Codec, v []byte) ([]byte, error) {
			m := &schemas.ScoreResponse{}
			if err := c.DecodeScoreResponse(lim, v, m); err != nil {
				return nil, err
			}
			return schemas.JSON.AppendScoreResponse(nil, m)
		}, nil
	case "decision":
		return func(c schemas.Codec, v []byte) ([]byte, error) {
			m := &schemas.Decision{}
			if err := c.DecodeDecision(lim, v, m); err != nil {
				return nil, err
			}
			return schemas.JSON.AppendDecision(nil, m)
		}, nil
	}
	return nil, fmt.Errorf("-kind: %q is not event, request, response, decision or auto", kind)
}

// record is the printed form of a Kafka record.
type printed struct {
	Partition  int               `json:"partition"`
	Offset     int64             `json:"offset"`
	Time       string            `json:"time"`
	Key        string            `json:"key,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Value      json.RawMessage   `json:"value,omitempty"`
	ValueError string            `json:"value_error,omitempty"`
	ValueText  string            `json:"value_text,omitempty"`
}

func render(m kafka.Message, decode func(schemas.Codec, []byte) ([]byte, error)) []byte {
	p := printed{Partition: m.Partition, Offset: m.Offset, Time: m.Time.UTC().Format(time.RFC3339Nano), Key: string(m.Key)}
	contentType := ""
	for _, h := range m.Headers {
		if h.Key == schemas.HeaderContentType {
			contentType = string(h.Value)
		}
		if p.Headers == nil {
			p.Headers = map[string]string{}
		}
		p.Headers[h.Key] = string(h.Value)
	}
	codec, err := schemas.CodecFor(contentType)
	var v []byte
	if err == nil {
		v, err = decode(codec, m.Value)
	}
	if err != nil {
		p.ValueError = err.Error()
		if utf8.Valid(m.Value) {
			p.ValueText = string(m.Value)
		} else {
			p.ValueText = fmt.Sprintf("%d bytes, not UTF-8: %x", len(m.Value), m.Value[:min(len(m.Value), 64)])
		}
	} else {
		p.Value = v
	}
	out, _ := json.Marshal(p)
	return out
}
