package consumers

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/schemas"
	"github.com/banditstream/banditstream/schemas/registry"
	"github.com/banditstream/banditstream/schemas/registry/registrytest"
)

// With a registry, a framed request is scored when its schema id is its
// topic's and dead-lettered with the reason when not; the protobuf
// response and decision are framed with the ids registered for their
// topics; a registry that cannot answer fails the batch, dead-lettering
// nothing.
func TestScorerSchemaRegistry(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t)
	reg, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	accepted := srv.Register("req-value", "PROTOBUF", schemas.ProtoSource)
	foreign := srv.Register("other-value", "PROTOBUF", `syntax = "proto3"; message X {}`)
	framed := func(off int64, id string, schema uint32) record {
		r := requestRecord(t, off, &schemas.ScoreRequest{RequestId: id, UserId: "u", Context: "c", Candidates: []string{"a", "b"}, K: 2}, schemas.Protobuf)
		r.value = append(schemas.AppendFrame(nil, schema, requestType), r.value...)
		r.headers = nil
		return r
	}
	batch := []record{framed(0, "ok", accepted), framed(1, "foreign", foreign),
		requestRecord(t, 2, &schemas.ScoreRequest{RequestId: "json", UserId: "u", Context: "c", Candidates: []string{"a"}, K: 1}, schemas.JSON)}

	srv.Down.Store(true)
	out := &fakeWriter{}
	s := newTestScorer(t, ScorerConfig{Registry: reg, DecisionsTopic: "decisions"}, &fakeReader{}, nil, out)
	if err := newScoreWorker(s, 0).process(ctx, ctx, batch); !errors.Is(err, registry.ErrUnavailable) || len(out.written()) != 0 {
		t.Fatalf("registry down: %v, %d written; want ErrUnavailable and nothing", err, len(out.written()))
	}
	srv.Down.Store(false)
	if err := newScoreWorker(s, 0).process(ctx, ctx, batch); err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, sc := range srv.Schemas() {
		for subject := range sc.Subjects {
			ids[subject] = sc.ID
		}
	}
	got := map[string]kafka.Message{}
	for _, m := range out.written() {
		got[m.Topic+"/"+string(m.Key)] = m
	}
	if m, ok := got["req.dlq/foreign"]; !ok || !strings.Contains(headerValue(m.Headers, HeaderError), `is not a version of subject "req-value"`) {
		t.Errorf("foreign schema: %v", got)
	}
	frameOf := func(m kafka.Message) uint32 {
		if len(m.Value) < 5 || m.Value[0] != schemas.MagicByte {
			return 0
		}
		return binary.BigEndian.Uint32(m.Value[1:5])
	}
	if m := got["res/ok"]; ids["res-value"] == 0 || frameOf(m) != ids["res-value"] || decodeResponse(t, m).GetRequestId() != "ok" {
		t.Errorf("protobuf response framed with %d, want res-value's %d", frameOf(m), ids["res-value"])
	}
	if m := got["res/json"]; frameOf(m) != 0 || !strings.HasPrefix(string(m.Value), "{") {
		t.Errorf("JSON response %q, want unframed JSON", m.Value)
	}
	if m := got["decisions/u"]; ids["decisions-value"] == 0 || frameOf(m) != ids["decisions-value"] {
		t.Errorf("decision framed with %d, want decisions-value's %d", frameOf(m), ids["decisions-value"])
	}
	if n := srv.Requests("POST"); n != 2 {
		t.Errorf("%d registrations, want 2 (results and decisions, once each)", n)
	}
}

// Ingest with a registry: a framed event of its topic's schema counts, one
// of another subject is dead-lettered with the reason, and while the
// registry cannot answer the batch fails, dead-lettering nothing.
func TestIngestSchemaRegistry(t *testing.T) {
	ctx := context.Background()
	srv := registrytest.New(t)
	reg, err := registry.New(registry.Config{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	accepted := srv.Register("ev-value", "PROTOBUF", schemas.ProtoSource)
	foreign := srv.Register("other-value", "PROTOBUF", `syntax = "proto3"; message X {}`)
	arms, dlq := newFakeArms(2), &fakeWriter{}
	in := newTestIngest(t, arms, nil, dlq)
	in.cfg.Registry = reg
	h := &ingestPartition{in: in, p: started(t, in)}
	framed := func(off int64, item string, id uint32) record {
		r := eventRecord(t, off, "u", item, schemas.Click)
		r.value, r.headers = append(schemas.AppendFrame(nil, id, interactionType), r.value...), nil
		return r
	}
	batch := []record{framed(0, "a", accepted), framed(1, "b", foreign)}
	srv.Down.Store(true)
	if err := h.handle(ctx, ctx, batch); !errors.Is(err, registry.ErrUnavailable) || len(dlq.written()) != 0 {
		t.Fatalf("registry down: %v, %d dead letters; want ErrUnavailable and none", err, len(dlq.written()))
	}
	srv.Down.Store(false)
	if err := h.handle(ctx, ctx, batch); err != nil {
		t.Fatal(err)
	}
	if got := arms.count("home", "a", schemas.Click); got != 1 {
		t.Errorf("a: %d clicks, want 1", got)
	}
	if d := dlq.written(); len(d) != 1 || !strings.Contains(headerValue(d[0].Headers, HeaderError), `is not a version of subject "ev-value"`) {
		t.Errorf("dead letters %v", d)
	}
}
