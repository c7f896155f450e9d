package consumers

import (
	"context"
	"errors"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/banditstream/banditstream/schemas"
)

const (
	sampledParent   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	sampledParent2  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	unsampledParent = "00-11111111111111111111111111111111-2222222222222222-00"
)

func withTraceparent(r record, tp string) record {
	r.headers = append(r.headers, kafka.Header{Key: HeaderTraceparent, Value: []byte(tp)},
		kafka.Header{Key: HeaderTracestate, Value: []byte("vendor=1")})
	return r
}

func recorder(t *testing.T) (*tracetest.SpanRecorder, trace.Tracer) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return rec, tp.Tracer("test")
}

// linkedTraces returns the trace ids a span links to.
func linkedTraces(s sdktrace.ReadOnlySpan) []string {
	var ids []string
	for _, l := range s.Links() {
		ids = append(ids, l.SpanContext.TraceID().String())
	}
	return ids
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// A batch of requests makes one span, linked to each sampled trace
// context the requests carry (the unsampled and the absent are not), with
// the batch's outcome.
func TestScorerBatchSpan(t *testing.T) {
	rec, tracer := recorder(t)
	s := newTestScorer(t, ScorerConfig{Tracer: tracer}, &fakeReader{}, nil, &fakeWriter{})
	req := func(off int64, id string) record {
		return requestRecord(t, off, &schemas.ScoreRequest{RequestId: id, UserId: "u", Context: "c", Candidates: []string{"a", "b", "c"}, K: 2}, schemas.Protobuf)
	}
	batch := []record{withTraceparent(req(0, "a"), sampledParent), req(1, "b"), withTraceparent(req(2, "c"), unsampledParent),
		withTraceparent(req(3, "d"), sampledParent2), {offset: 4, value: []byte("garbage")}}
	ctx := context.Background()
	if err := newScoreWorker(s, 3).handle(ctx, ctx, batch); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != SpanScoreBatch || spans[0].SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("spans %v", spans)
	}
	sp := spans[0]
	if got := linkedTraces(sp); len(got) != 2 || got[0] != "0af7651916cd43dd8448eb211c80319c" || got[1] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("links to %v, want the two sampled requests' traces", got)
	}
	if ts := sp.Links()[0].SpanContext.TraceState().String(); ts != "vendor=1" {
		t.Errorf("link's tracestate %q", ts)
	}
	for key, want := range map[string]int64{"messaging.batch.message_count": 5, "banditstream.requests.scored": 4,
		"banditstream.candidates": 12, "banditstream.dead_letters": 1} {
		if got := attr(sp, key).AsInt64(); got != want {
			t.Errorf("%s = %d, want %d", key, got, want)
		}
	}
	if got := attr(sp, "messaging.destination.partition.id").AsString(); got != "3" {
		t.Errorf("partition %q", got)
	}
}

// An ingest batch makes one span linked to its events' trace contexts,
// marked as failed when the batch fails.
func TestIngestBatchSpan(t *testing.T) {
	rec, tracer := recorder(t)
	arms := newFakeArms(2)
	in := newTestIngest(t, arms, nil, &fakeWriter{})
	in.cfg.Tracer = tracer
	h := &ingestPartition{in: in, p: started(t, in)}
	ctx := context.Background()
	batch := batchOf(t, 0, "a", "b")
	batch[1] = withTraceparent(batch[1], sampledParent)
	if err := h.handle(ctx, ctx, batch); err != nil {
		t.Fatal(err)
	}
	in.cfg.Durable = func(context.Context) (string, error) { return "", errors.New("replicas away") }
	if err := h.handle(ctx, ctx, batchOf(t, 2, "a")); err == nil {
		t.Fatal("the failing batch succeeded")
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != SpanIngestBatch {
		t.Fatalf("spans %v", spans)
	}
	if got := linkedTraces(spans[0]); len(got) != 1 || got[0] != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("links to %v", got)
	}
	if spans[0].Status().Code.String() != "Unset" || spans[1].Status().Code.String() != "Error" || spans[1].Status().Description != "replicas away" {
		t.Errorf("statuses %v, %v", spans[0].Status(), spans[1].Status())
	}
}
