package schemas_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/banditstream/banditstream/schemas"
)

// Each decoder, fed anything: it never panics, and whatever it accepts
// encodes and decodes back to an equal message.

func seedCorpus(f *testing.F, c schemas.Codec) {
	f.Helper()
	if b, err := c.AppendInteraction(nil, validInteraction()); err == nil {
		f.Add(b)
	}
	if b, err := c.AppendScoreRequest(nil, validRequest()); err == nil {
		f.Add(b)
	}
	resp := &schemas.ScoreResponse{RequestId: "r", Items: []*schemas.RankedItem{{ItemId: "a", Score: 0.3, Mean: 0.2,
		Explanation: &schemas.Explanation{Alpha: 2, Beta: 8, Source: schemas.SourceCache, UserAlpha: 1}, Propensity: 0.25, TopkPropensity: 0.75}}}
	if b, err := c.AppendScoreResponse(nil, resp); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("{}"))
	f.Add([]byte{0x0a, 0x01})
}

func roundTrip[M proto.Message](t *testing.T, data []byte, newMsg func() M,
	decode func(schemas.Limits, []byte, M) error, encode func([]byte, M) ([]byte, error)) {
	lim := schemas.DefaultLimits()
	m1 := newMsg()
	if err := decode(lim, data, m1); err != nil {
		return
	}
	b, err := encode(nil, m1)
	if err != nil {
		// Only values the codec cannot carry (NaN in JSON) may fail here.
		return
	}
	m2 := newMsg()
	if err := decode(lim, b, m2); err != nil {
		t.Fatalf("re-decoding %q (from %q): %v", b, data, err)
	}
	if !proto.Equal(m1, m2) {
		t.Fatalf("round trip changed the message:\n first %v\nsecond %v", m1, m2)
	}
}

func fuzzInteraction(f *testing.F, c schemas.Codec) {
	seedCorpus(f, c)
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() *schemas.Interaction { return new(schemas.Interaction) }, c.DecodeInteraction, c.AppendInteraction)
	})
}

func fuzzScoreRequest(f *testing.F, c schemas.Codec) {
	seedCorpus(f, c)
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() *schemas.ScoreRequest { return new(schemas.ScoreRequest) }, c.DecodeScoreRequest, c.AppendScoreRequest)
	})
}

func fuzzScoreResponse(f *testing.F, c schemas.Codec) {
	seedCorpus(f, c)
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() *schemas.ScoreResponse { return new(schemas.ScoreResponse) }, c.DecodeScoreResponse, c.AppendScoreResponse)
	})
}

func fuzzDecision(f *testing.F, c schemas.Codec) {
	seedCorpus(f, c)
	if b, err := c.AppendDecision(nil, validDecision()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, func() *schemas.Decision { return new(schemas.Decision) }, c.DecodeDecision, c.AppendDecision)
	})
}

func FuzzInteractionProtoJSON(f *testing.F)   { fuzzInteraction(f, schemas.ProtoJSON) }
func FuzzScoreRequestProtoJSON(f *testing.F)  { fuzzScoreRequest(f, schemas.ProtoJSON) }
func FuzzScoreResponseProtoJSON(f *testing.F) { fuzzScoreResponse(f, schemas.ProtoJSON) }
func FuzzDecisionProtobuf(f *testing.F)       { fuzzDecision(f, schemas.Protobuf) }
func FuzzDecisionJSON(f *testing.F)           { fuzzDecision(f, schemas.JSON) }
func FuzzInteractionProtobuf(f *testing.F)    { fuzzInteraction(f, schemas.Protobuf) }
func FuzzInteractionJSON(f *testing.F)        { fuzzInteraction(f, schemas.JSON) }
func FuzzScoreRequestProtobuf(f *testing.F)   { fuzzScoreRequest(f, schemas.Protobuf) }
func FuzzScoreRequestJSON(f *testing.F)       { fuzzScoreRequest(f, schemas.JSON) }
func FuzzScoreResponseProtobuf(f *testing.F)  { fuzzScoreResponse(f, schemas.Protobuf) }
func FuzzScoreResponseJSON(f *testing.F)      { fuzzScoreResponse(f, schemas.JSON) }

// The aliasing decoder accepts exactly what the Protobuf codec accepts as
// protobuf (framed or not) and
// yields the same message but for unknown fields, also when its message
// and candidate slice are reused from a longer request.
func FuzzScoreRequestAliased(f *testing.F) {
	seedCorpus(f, schemas.Protobuf)
	long := validRequest()
	for i := 0; i < 50; i++ {
		long.Candidates = append(long.Candidates, "extra")
	}
	longWire, _ := schemas.Protobuf.AppendScoreRequest(nil, long)
	f.Add(append([]byte{0x58, 0x01}, longWire...)) // an unknown varint field 11 first
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := schemas.DefaultLimits()
		if c, _, _, err := schemas.Unframe(schemas.Protobuf, data); err == nil && c != schemas.Protobuf {
			return // JSON: the Protobuf codec hands it to the JSON decoder
		}
		want := new(schemas.ScoreRequest)
		errWant := schemas.Protobuf.DecodeScoreRequest(lim, data, want)
		got := new(schemas.ScoreRequest)
		if err := schemas.DecodeScoreRequestAliased(lim, longWire, got); err != nil {
			t.Fatal(err)
		}
		errGot := schemas.DecodeScoreRequestAliased(lim, data, got)
		if (errGot == nil) != (errWant == nil) {
			t.Fatalf("%q: aliased decoder error %v, protobuf error %v", data, errGot, errWant)
		}
		if errWant != nil {
			return
		}
		want.ProtoReflect().SetUnknown(nil)
		if !proto.Equal(got, want) {
			t.Fatalf("%q: aliased decoder gave\n%v\nprotobuf gave\n%v", data, got, want)
		}
	})
}
