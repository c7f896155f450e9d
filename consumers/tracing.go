package consumers

import (
	"context"
	"strconv"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Span names of the batches.
const (
	SpanScoreBatch  = "score batch"
	SpanIngestBatch = "ingest batch"
)

// headerCarrier reads a record's headers as a propagation carrier.
type headerCarrier []kafka.Header

func (c headerCarrier) Get(key string) string { return headerValue(c, key) }
func (c headerCarrier) Set(string, string)    {}
func (c headerCarrier) Keys() []string {
	keys := make([]string, len(c))
	for i, h := range c {
		keys[i] = h.Key
	}
	return keys
}

var traceContext = propagation.TraceContext{}

// startBatchSpan starts the span of a batch of topic's partition, linked
// to the trace context (traceparent, tracestate) of each of its records
// that carries a sampled one, when tracer is set; otherwise it does
// nothing and returns a nil span. The SDK keeps the first
// OTEL_SPAN_LINK_COUNT_LIMIT links (128 by default) and counts the rest.
func startBatchSpan(ctx context.Context, tracer trace.Tracer, name, topic string, partition int, batch []record) trace.Span {
	if tracer == nil {
		return nil
	}
	var links []trace.Link
	for i := range batch {
		r := &batch[i]
		if headerValue(r.headers, HeaderTraceparent) == "" {
			continue
		}
		sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), headerCarrier(r.headers)))
		if sc.IsValid() && sc.IsSampled() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{semconv.MessagingKafkaOffset(int(r.offset))}})
		}
	}
	_, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(topic), semconv.MessagingDestinationPartitionID(strconv.Itoa(partition)),
			semconv.MessagingBatchMessageCount(len(batch))))
	return span
}

// endBatchSpan ends a span startBatchSpan started, with the batch's
// outcome.
func endBatchSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if span == nil {
		return
	}
	span.SetAttributes(attrs...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
