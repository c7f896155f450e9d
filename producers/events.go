package producers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/banditstream/banditstream/schemas"
)

// Config configures the Kafka side of a producer or client. Zero fields
// take the documented defaults.
type Config struct {
	Brokers []string
	// Codec encodes the messages; default schemas.Protobuf.
	Codec schemas.Codec
	// Limits checks every message before it is sent; default
	// schemas.DefaultLimits().
	Limits schemas.Limits
	// BatchSize, BatchBytes and BatchTimeout bound how messages are
	// grouped per partition; defaults 1000, 1 MiB and 5 ms. A synchronous
	// call waits at most BatchTimeout for company.
	BatchSize    int
	BatchBytes   int64
	BatchTimeout time.Duration
	// Compression of the batches: "" (none), "gzip", "snappy", "lz4" or
	// "zstd".
	Compression string
	// WriteTimeout bounds one write to the brokers; default 10 s.
	WriteTimeout time.Duration
	// Transport to the brokers (TLS, SASL); nil uses kafka-go's default.
	Transport kafka.RoundTripper
	// Dialer of the readers (RankClient's reply topic), with the same TLS
	// and SASL as Transport; nil dials plain connections.
	Dialer *kafka.Dialer
}

func (c *Config) setDefaults() {
	if c.Limits == (schemas.Limits{}) {
		c.Limits = schemas.DefaultLimits()
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1000
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = 1 << 20
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = 5 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.BatchSize < 1 || c.BatchBytes < 1024 || c.BatchTimeout < 0 || c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("batch size must be positive, batch bytes at least 1 KiB, timeouts not negative"))
	}
	if _, err := compression(c.Compression); err != nil {
		errs = append(errs, err)
	}
	if c.Codec > schemas.ProtoJSONNames {
		errs = append(errs, fmt.Errorf("unknown codec %v", c.Codec))
	}
	if err := c.Limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func compression(name string) (compress.Compression, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return 0, nil
	case "gzip":
		return compress.Gzip, nil
	case "snappy":
		return compress.Snappy, nil
	case "lz4":
		return compress.Lz4, nil
	case "zstd":
		return compress.Zstd, nil
	}
	return 0, fmt.Errorf("unknown compression %q (none, gzip, snappy, lz4, zstd)", name)
}

// writer returns a synchronous writer with acks from all in-sync replicas;
// messages name their topic.
func (c Config) writer() *kafka.Writer {
	comp, _ := compression(c.Compression)
	return NewSyncWriter(WriterConfig{
		Brokers: c.Brokers, BatchSize: c.BatchSize, BatchBytes: c.BatchBytes, BatchTimeout: c.BatchTimeout,
		WriteTimeout: c.WriteTimeout, Compression: comp, Transport: c.Transport,
	})
}

func (c Config) headers() []kafka.Header {
	return []kafka.Header{{Key: schemas.HeaderContentType, Value: []byte(c.Codec.ContentType())}}
}

// EventProducer publishes interactions, keyed by user id, and returns only
// once the brokers acknowledged them. It is safe for concurrent use;
// concurrent calls share batches.
type EventProducer struct {
	cfg   Config
	topic string
	w     *kafka.Writer
}

// NewEventProducer returns a producer writing to topic (default
// "interactions").
func NewEventProducer(cfg Config, topic string) (*EventProducer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("event producer: %w", err)
	}
	if topic == "" {
		topic = schemas.TopicInteractions
	}
	return &EventProducer{cfg: cfg, topic: topic, w: cfg.writer()}, nil
}

// NewEventID returns a random event id (128 bits, hex). Producers make the
// id once per real-world event and keep it across retries, so the cold
// tier's history stores a retried event once.
func NewEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Publish validates ev and publishes it.
func (p *EventProducer) Publish(ctx context.Context, ev *schemas.Interaction) error {
	err := p.PublishBatch(ctx, []*schemas.Interaction{ev})
	var be *BatchError
	if errors.As(err, &be) {
		return be.Errs[0]
	}
	return err
}

// BatchError reports the events of a batch that were not published: Errs
// has one entry per event, nil for those the brokers acknowledged.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			n++
			if first == nil {
				first = err
			}
		}
	}
	return fmt.Sprintf("%d of %d events not published; first: %v", n, len(e.Errs), first)
}

// Failed returns the indexes of the events not published.
func (e *BatchError) Failed() []int {
	var out []int
	for i, err := range e.Errs {
		if err != nil {
			out = append(out, i)
		}
	}
	return out
}

// PublishBatch validates and publishes evs. It returns nil when every event
// was acknowledged, or a *BatchError with an error per event: invalid ones
// (schemas.ErrInvalid; they were not sent) and those the brokers did not
// acknowledge (safe to publish again: ingest counts an event id's retry
// once in the history, though a retry that does land twice at two offsets
// counts twice in the arm counts).
func (p *EventProducer) PublishBatch(ctx context.Context, evs []*schemas.Interaction) error {
	errs := make([]error, len(evs))
	msgs := make([]kafka.Message, 0, len(evs))
	index := make([]int, 0, len(evs))
	now := time.Now()
	failed := false
	for i, ev := range evs {
		if err := p.cfg.Limits.CheckInteraction(ev, now); err != nil {
			errs[i], failed = err, true
			continue
		}
		v, err := p.cfg.Codec.AppendInteraction(nil, ev)
		if err == nil {
			err = p.cfg.Limits.CheckSize(len(v))
		}
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		msgs = append(msgs, kafka.Message{Topic: p.topic, Key: []byte(ev.GetUserId()), Value: v, Headers: p.cfg.headers()})
		index = append(index, i)
	}
	if len(msgs) > 0 {
		if err := p.w.WriteMessages(ctx, msgs...); err != nil {
			failed = true
			var werrs kafka.WriteErrors
			if errors.As(err, &werrs) && len(werrs) == len(msgs) {
				for j, e := range werrs {
					if e != nil {
						errs[index[j]] = fmt.Errorf("publishing event %s: %w", evs[index[j]].GetEventId(), e)
					}
				}
			} else {
				for _, i := range index {
					errs[i] = fmt.Errorf("publishing event %s: %w", evs[i].GetEventId(), err)
				}
			}
		}
	}
	if failed {
		return &BatchError{Errs: errs}
	}
	return nil
}

// Close flushes nothing (every call waited for its acknowledgement) and
// releases the connections.
func (p *EventProducer) Close() error { return p.w.Close() }
