package schemas_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/banditstream/banditstream/schemas"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func validInteraction() *schemas.Interaction {
	return &schemas.Interaction{
		EventId: "e-1", UserId: "u-1", ItemId: "sku-1", Context: "home",
		Type: schemas.Click, EventTimeMs: now.UnixMilli(), SessionId: "s-1",
		Attributes: map[string]string{"category": "shoes"}, Value: 12.5,
	}
}

func validRequest() *schemas.ScoreRequest {
	seed := uint64(7)
	return &schemas.ScoreRequest{
		RequestId: "r-1", UserId: "u-1", Context: "home", Candidates: []string{"a", "b", "c"},
		K: 2, DeadlineMs: now.UnixMilli() + 50, ReplyTopic: "replies.client-1", Mode: schemas.ModeMean,
		Seed: &seed, SentTimeMs: now.UnixMilli(), Explain: true, Propensities: true,
	}
}

func validDecision() *schemas.Decision {
	return &schemas.Decision{
		RequestId: "r-1", UserId: "u-1", Context: "home", Candidates: []string{"a", "b", "c"}, Alpha: []float64{2, 3, 1}, Beta: []float64{8, 7, 1},
		Items: []*schemas.RankedItem{{ItemId: "b", Score: 0.4, Mean: 0.3, Propensity: 0.5, TopkPropensity: 0.8},
			{ItemId: "c", Score: 0.3, Mean: 0.5, Propensity: 0.25, TopkPropensity: 0.7}},
		K: 2, Mode: schemas.ModeThompson, Seed: 99, ModelVersion: "beta(1,1)", DecidedTimeMs: now.UnixMilli(), PropensityDraws: 1000,
	}
}

func TestCheckInteraction(t *testing.T) {
	lim := schemas.DefaultLimits()
	tests := []struct {
		name   string
		mutate func(*schemas.Interaction)
		field  string // "" means valid
	}{
		{"valid", func(*schemas.Interaction) {}, ""},
		{"empty context is fine", func(m *schemas.Interaction) { m.Context = "" }, ""},
		{"old event is fine", func(m *schemas.Interaction) { m.EventTimeMs = 1 }, ""},
		{"missing event id", func(m *schemas.Interaction) { m.EventId = "" }, "event_id"},
		{"missing user id", func(m *schemas.Interaction) { m.UserId = "" }, "user_id"},
		{"missing item id", func(m *schemas.Interaction) { m.ItemId = "" }, "item_id"},
		{"long user id", func(m *schemas.Interaction) { m.UserId = strings.Repeat("u", 257) }, "user_id"},
		{"control char in item id", func(m *schemas.Interaction) { m.ItemId = "a\x1fb" }, "item_id"},
		{"long context", func(m *schemas.Interaction) { m.Context = strings.Repeat("c", 257) }, "context"},
		{"long session id", func(m *schemas.Interaction) { m.SessionId = strings.Repeat("s", 257) }, "session_id"},
		{"unspecified type", func(m *schemas.Interaction) { m.Type = 0 }, "type"},
		{"unknown type", func(m *schemas.Interaction) { m.Type = 42 }, "type"},
		{"zero time", func(m *schemas.Interaction) { m.EventTimeMs = 0 }, "event_time_ms"},
		{"negative time", func(m *schemas.Interaction) { m.EventTimeMs = -5 }, "event_time_ms"},
		{"far future", func(m *schemas.Interaction) { m.EventTimeMs = now.Add(25 * time.Hour).UnixMilli() }, "event_time_ms"},
		{"NaN value", func(m *schemas.Interaction) { m.Value = math.NaN() }, "value"},
		{"infinite value", func(m *schemas.Interaction) { m.Value = math.Inf(1) }, "value"},
		{"negative value", func(m *schemas.Interaction) { m.Value = -1 }, "value"},
		{"too many attributes", func(m *schemas.Interaction) {
			m.Attributes = map[string]string{}
			for i := 0; i < 65; i++ {
				m.Attributes[strings.Repeat("k", i+1)] = "v"
			}
		}, "attributes"},
		{"large attribute", func(m *schemas.Interaction) { m.Attributes = map[string]string{"k": strings.Repeat("v", 1024)} }, "attributes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validInteraction()
			tc.mutate(m)
			checkFieldError(t, lim.CheckInteraction(m, now), tc.field)
		})
	}
}

func TestCheckScoreRequest(t *testing.T) {
	lim := schemas.DefaultLimits()
	tests := []struct {
		name   string
		mutate func(*schemas.ScoreRequest)
		field  string
	}{
		{"valid", func(*schemas.ScoreRequest) {}, ""},
		{"k above candidate count is fine", func(m *schemas.ScoreRequest) { m.K = 100 }, ""},
		{"past deadline is fine", func(m *schemas.ScoreRequest) { m.DeadlineMs = 1 }, ""},
		{"no deadline", func(m *schemas.ScoreRequest) { m.DeadlineMs = 0 }, ""},
		{"exactly the candidate limit", func(m *schemas.ScoreRequest) { m.Candidates = ids(10_000) }, ""},
		{"missing request id", func(m *schemas.ScoreRequest) { m.RequestId = "" }, "request_id"},
		{"missing user id", func(m *schemas.ScoreRequest) { m.UserId = "" }, "user_id"},
		{"no candidates", func(m *schemas.ScoreRequest) { m.Candidates = nil }, "candidates"},
		{"too many candidates", func(m *schemas.ScoreRequest) { m.Candidates = ids(10_001) }, "candidates"},
		{"empty candidate", func(m *schemas.ScoreRequest) { m.Candidates = []string{"a", ""} }, "candidates"},
		{"k zero", func(m *schemas.ScoreRequest) { m.K = 0 }, "k"},
		{"k negative", func(m *schemas.ScoreRequest) { m.K = -3 }, "k"},
		{"k over limit", func(m *schemas.ScoreRequest) { m.K = 10_001 }, "k"},
		{"negative deadline", func(m *schemas.ScoreRequest) { m.DeadlineMs = -1 }, "deadline_ms"},
		{"negative sent time", func(m *schemas.ScoreRequest) { m.SentTimeMs = -1 }, "sent_time_ms"},
		{"bad reply topic", func(m *schemas.ScoreRequest) { m.ReplyTopic = "a topic" }, "reply_topic"},
		{"unknown mode", func(m *schemas.ScoreRequest) { m.Mode = 9 }, "mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := validRequest()
			tc.mutate(m)
			checkFieldError(t, lim.CheckScoreRequest(m), tc.field)
		})
	}
}

func TestCheckScoreResponse(t *testing.T) {
	lim := schemas.DefaultLimits()
	ok := &schemas.ScoreResponse{RequestId: "r", Items: []*schemas.RankedItem{{ItemId: "a", Score: 0.5, Mean: 0.4}}}
	checkFieldError(t, lim.CheckScoreResponse(ok), "")
	bad := &schemas.ScoreResponse{RequestId: "r", Items: []*schemas.RankedItem{{ItemId: "a", Score: math.NaN()}}}
	checkFieldError(t, lim.CheckScoreResponse(bad), "items")
	checkFieldError(t, lim.CheckScoreResponse(&schemas.ScoreResponse{}), "request_id")
}

func checkFieldError(t *testing.T, err error, field string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want an error about %s, got none", field)
	}
	if !errors.Is(err, schemas.ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var fe *schemas.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a *FieldError, got %T: %v", err, err)
	}
	if fe.Field != field {
		t.Errorf("error names field %q, want %q (%v)", fe.Field, field, err)
	}
	if fe.Reason == "" || !strings.Contains(err.Error(), field) {
		t.Errorf("error %q should name the field and a reason", err)
	}
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "item-" + strings.Repeat("x", i%7) + string(rune('a'+i%26))
	}
	return out
}

func TestCodecFor(t *testing.T) {
	tests := []struct {
		header string
		want   schemas.Codec
		err    bool
	}{
		{"", schemas.Protobuf, false},
		{"application/x-protobuf", schemas.Protobuf, false},
		{"application/json", schemas.JSON, false},
		{"text/plain", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.header, func(t *testing.T) {
			got, err := schemas.CodecFor(tc.header)
			if (err != nil) != tc.err || (!tc.err && got != tc.want) {
				t.Fatalf("CodecFor(%q) = %v, %v", tc.header, got, err)
			}
			if err != nil && !errors.Is(err, schemas.ErrInvalid) {
				t.Fatalf("unknown content type should be ErrInvalid, got %v", err)
			}
			if !tc.err {
				if back, _ := schemas.CodecFor(got.ContentType()); back != got {
					t.Fatalf("ContentType round trip: %v -> %q -> %v", got, got.ContentType(), back)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	lim := schemas.DefaultLimits()
	resp := &schemas.ScoreResponse{
		RequestId: "r-1", UserId: "u-1", Context: "home", ModelVersion: "v1", Mode: schemas.ModeThompson,
		Items: []*schemas.RankedItem{{ItemId: "a", Score: 0.9, Mean: 0.5,
			Explanation: &schemas.Explanation{Alpha: 3.5, Beta: 3.5, Source: schemas.SourceHot, UserAlpha: 1, UserBeta: 0.5},
			Propensity:  0.4, TopkPropensity: 0.9},
			{ItemId: "b", Score: 0.1, Mean: 0.2, Explanation: &schemas.Explanation{Alpha: 1, Beta: 4, Source: schemas.SourcePrior}}},
		Timing: &schemas.Timing{SentTimeMs: 1, ReceivedTimeMs: 2, ScoredTimeMs: 3, ScoringMicros: 4},
	}
	for _, c := range []schemas.Codec{schemas.Protobuf, schemas.JSON} {
		t.Run(c.String(), func(t *testing.T) {
			in := validInteraction()
			b, err := c.AppendInteraction(nil, in)
			if err != nil {
				t.Fatal(err)
			}
			var out schemas.Interaction
			if err := c.DecodeInteraction(lim, b, &out); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(in, &out) {
				t.Fatalf("interaction: got %v, want %v", &out, in)
			}

			req := validRequest()
			b, err = c.AppendScoreRequest(b[:0], req)
			if err != nil {
				t.Fatal(err)
			}
			var req2 schemas.ScoreRequest
			if err := c.DecodeScoreRequest(lim, b, &req2); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(req, &req2) {
				t.Fatalf("request: got %v, want %v", &req2, req)
			}

			b, err = c.AppendScoreResponse(b[:0], resp)
			if err != nil {
				t.Fatal(err)
			}
			var resp2 schemas.ScoreResponse
			if err := c.DecodeScoreResponse(lim, b, &resp2); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(resp, &resp2) {
				t.Fatalf("response: got %v, want %v", &resp2, resp)
			}

			dec := validDecision()
			b, err = c.AppendDecision(b[:0], dec)
			if err != nil {
				t.Fatal(err)
			}
			var dec2 schemas.Decision
			if err := c.DecodeDecision(lim, b, &dec2); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(dec, &dec2) {
				t.Fatalf("decision: got %v, want %v", &dec2, dec)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	lim := schemas.DefaultLimits()
	lim.MaxMessageBytes = 100
	tests := []struct {
		name  string
		codec schemas.Codec
		data  string
		field string
	}{
		{"truncated protobuf", schemas.Protobuf, "\x0a\x05ab", "message"},
		{"invalid utf-8 in protobuf", schemas.Protobuf, "\x12\x02\xff\xfe", "message"},
		{"oversize", schemas.Protobuf, strings.Repeat("\x00", 101), "message"},
		{"not JSON", schemas.JSON, "{event_id:", "message"},
		{"trailing JSON", schemas.JSON, `{"type":"click"} {}`, "message"},
		{"unknown type in JSON", schemas.JSON, `{"type":"purchase"}`, "type"},
		{"missing type in JSON", schemas.JSON, `{"user_id":"u"}`, "type"},
		{"wrong JSON type", schemas.JSON, `{"type":"click","event_time_ms":"soon"}`, "message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m schemas.Interaction
			checkFieldError(t, tc.codec.DecodeInteraction(lim, []byte(tc.data), &m), tc.field)
		})
	}
}

func TestEventTypeNames(t *testing.T) {
	for _, typ := range []schemas.EventType{schemas.Impression, schemas.Click, schemas.Wishlist, schemas.AddToCart, schemas.Order} {
		name := schemas.EventTypeName(typ)
		back, ok := schemas.ParseEventType(name)
		if name == "" || !ok || back != typ {
			t.Errorf("%v: name %q parses back to %v, %v", typ, name, back, ok)
		}
	}
	if _, ok := schemas.ParseEventType("purchase"); ok {
		t.Error("ParseEventType accepted an unknown name")
	}
	if schemas.EventTypeName(0) != "" || schemas.EventTypeName(99) != "" {
		t.Error("EventTypeName named an unknown type")
	}
}

// Every message in each JSON form (the simple one, protobuf's canonical
// mapping with lowerCamelCase names and with the .proto's names) decodes,
// under the one content type application/json, to the same message, and a
// request says which form it was in; canonical JSON as other clients write
// it (enum names or numbers, 64-bit integers as strings) is read too.
func TestJSONForms(t *testing.T) {
	lim := schemas.DefaultLimits()
	forms := []schemas.Codec{schemas.JSON, schemas.ProtoJSON, schemas.ProtoJSONNames}
	for _, form := range forms {
		t.Run(form.String(), func(t *testing.T) {
			if form.ContentType() != schemas.ContentTypeJSON {
				t.Fatalf("content type %q", form.ContentType())
			}
			ev := validInteraction()
			b, err := form.AppendInteraction(nil, ev)
			if err != nil {
				t.Fatal(err)
			}
			var ev2 schemas.Interaction
			if err := schemas.JSON.DecodeInteraction(lim, b, &ev2); err != nil || !proto.Equal(ev, &ev2) {
				t.Fatalf("interaction %s: %v\n%v", b, err, &ev2)
			}
			req := validRequest()
			b, err = form.AppendScoreRequest(nil, req)
			if err != nil {
				t.Fatal(err)
			}
			var req2 schemas.ScoreRequest
			got, err := schemas.JSON.DecodeScoreRequestForm(lim, b, &req2)
			if err != nil || got != form || !proto.Equal(req, &req2) {
				t.Fatalf("request %s: form %v, %v\n%v", b, got, err, &req2)
			}
			dec := validDecision()
			b, err = form.AppendDecision(nil, dec)
			if err != nil {
				t.Fatal(err)
			}
			var dec2 schemas.Decision
			if err := schemas.JSON.DecodeDecision(lim, b, &dec2); err != nil || !proto.Equal(dec, &dec2) {
				t.Fatalf("decision %s: %v", b, err)
			}
		})
	}
	for _, tc := range []struct {
		name, data string
	}{
		{"enum name, int64 as string", `{"eventId":"e-1","userId":"u-1","itemId":"sku-9","type":"EVENT_TYPE_CLICK","eventTimeMs":"1767225600000"}`},
		{"enum number, int64 as number", `{"eventId":"e-1","userId":"u-1","itemId":"sku-9","type":2,"eventTimeMs":1767225600000}`},
		{"proto names, enum name", `{"event_id":"e-1","user_id":"u-1","item_id":"sku-9","type":"EVENT_TYPE_CLICK","event_time_ms":"1767225600000"}`},
		{"simple", `{"event_id":"e-1","user_id":"u-1","item_id":"sku-9","type":"click","event_time_ms":1767225600000}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev schemas.Interaction
			if err := schemas.JSON.DecodeInteraction(lim, []byte(tc.data), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.GetType() != schemas.Click || ev.GetEventTimeMs() != 1767225600000 || ev.GetItemId() != "sku-9" {
				t.Fatalf("decoded %v", &ev)
			}
		})
	}
}
