package producers

import (
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// WriterConfig configures a synchronous writer. Zero fields take
// kafka-go's defaults.
type WriterConfig struct {
	Brokers []string
	// Topic of every message; empty when each message names its own.
	Topic string
	// BatchSize, BatchBytes and BatchTimeout bound how messages are grouped
	// per partition. kafka-go allocates BatchSize messages for every
	// partition's batch, so keep it near the batch sizes really sent.
	BatchSize    int
	BatchBytes   int64
	BatchTimeout time.Duration
	Compression  compress.Compression
	// WriteTimeout bounds one write to the brokers.
	WriteTimeout time.Duration
	// Transport to the brokers (TLS, SASL); nil uses kafka-go's default.
	Transport kafka.RoundTripper
}

// NewSyncWriter returns the writer every part of the pipeline writes
// with: synchronous (WriteMessages returns once the batch is acknowledged
// or failed), acknowledged by all in-sync replicas, and partitioned by
// key hash, so one key's messages keep their order.
func NewSyncWriter(c WriterConfig) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(c.Brokers...),
		Topic:        c.Topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    c.BatchSize,
		BatchBytes:   c.BatchBytes,
		BatchTimeout: c.BatchTimeout,
		WriteTimeout: c.WriteTimeout,
		Compression:  c.Compression,
		Transport:    c.Transport,
	}
}
