package schemas_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/banditstream/banditstream/schemas"
)

// A frame's header as Confluent's serializers write it, byte for byte.
func TestAppendFrame(t *testing.T) {
	md := func(m proto.Message) []byte {
		return schemas.AppendFrame(nil, 0x01020304, m.ProtoReflect().Descriptor())
	}
	// The first message of the file: the single 0 of the [0] shortcut.
	if got, want := md(&schemas.Interaction{}), []byte{0, 1, 2, 3, 4, 0}; string(got) != string(want) {
		t.Errorf("Interaction: %x, want %x", got, want)
	}
	// Another: count 1 and index 1, zigzag-encoded.
	if got, want := md(&schemas.ScoreRequest{}), []byte{0, 1, 2, 3, 4, 2, 2}; string(got) != string(want) {
		t.Errorf("ScoreRequest: %x, want %x", got, want)
	}
}

func TestUnframe(t *testing.T) {
	req, _ := schemas.Protobuf.AppendScoreRequest(nil, validRequest())
	js, _ := schemas.JSON.AppendScoreRequest(nil, validRequest())
	framedJSON := append([]byte{0, 0, 0, 0, 7, ' '}, js...)
	for _, c := range []struct {
		name    string
		header  schemas.Codec
		data    []byte
		codec   schemas.Codec
		payload []byte
		id      uint32
		framed  bool
	}{
		{"plain protobuf", schemas.Protobuf, req, schemas.Protobuf, req, 0, false},
		{"JSON without a header", schemas.Protobuf, js, schemas.JSON, js, 0, false},
		{"JSON with its header", schemas.JSON, js, schemas.JSON, js, 0, false},
		{"framed protobuf", schemas.Protobuf, append(schemas.AppendFrame(nil, 42, (&schemas.ScoreRequest{}).ProtoReflect().Descriptor()), req...), schemas.Protobuf, req, 42, true},
		{"framed protobuf, nested indexes", schemas.Protobuf, append([]byte{0, 0, 0, 1, 0, 4, 2, 6}, req...), schemas.Protobuf, req, 256, true},
		{"framed JSON", schemas.Protobuf, framedJSON, schemas.JSON, framedJSON[5:], 7, true},
		{"framed JSON with its header", schemas.JSON, framedJSON, schemas.JSON, framedJSON[5:], 7, true},
	} {
		codec, payload, f, err := schemas.Unframe(c.header, c.data)
		if err != nil || codec != c.codec || string(payload) != string(c.payload) || f.SchemaID != c.id || f.Framed != c.framed {
			t.Errorf("%s: %v %q %+v %v", c.name, codec, payload, f, err)
		}
	}
	for name, data := range map[string][]byte{
		"short header":         {0, 0, 1},
		"negative index count": {0, 0, 0, 0, 1, 1},
		"too many indexes":     {0, 0, 0, 0, 1, 0x7e},
		"truncated indexes":    {0, 0, 0, 0, 1, 4, 2},
		"negative index":       {0, 0, 0, 0, 1, 2, 1},
		"unterminated varint":  {0, 0, 0, 0, 1, 0x80},
	} {
		if _, _, _, err := schemas.Unframe(schemas.Protobuf, data); !errors.Is(err, schemas.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// Every wire form of a message decodes to that message, through the codec
// its content-type header names (none for the framed forms, as
// schema-registry serializers send them).
func FuzzWireForms(f *testing.F) {
	for _, ev := range []*schemas.Interaction{validInteraction(), {EventId: "e", UserId: "u\u00e9", ItemId: "i", Type: schemas.Order, EventTimeMs: -1, Value: 2.5}} {
		b, _ := schemas.Protobuf.AppendInteraction(nil, ev)
		f.Add(b, false)
	}
	b, _ := schemas.Protobuf.AppendScoreRequest(nil, validRequest())
	f.Add(b, true)
	lim := schemas.DefaultLimits()
	f.Fuzz(func(t *testing.T, data []byte, request bool) {
		if request {
			wireForms(t, data, func() *schemas.ScoreRequest { return new(schemas.ScoreRequest) },
				schemas.Codec.DecodeScoreRequest, schemas.Codec.AppendScoreRequest, lim.CheckScoreRequest)
		} else {
			wireForms(t, data, func() *schemas.Interaction { return new(schemas.Interaction) },
				schemas.Codec.DecodeInteraction, schemas.Codec.AppendInteraction,
				func(ev *schemas.Interaction) error {
					return lim.CheckInteraction(ev, time.UnixMilli(ev.GetEventTimeMs()))
				})
		}
	})
}

func wireForms[M proto.Message](t *testing.T, data []byte, newMsg func() M,
	decode func(schemas.Codec, schemas.Limits, []byte, M) error, encode func(schemas.Codec, []byte, M) ([]byte, error),
	check func(M) error) {
	lim := schemas.DefaultLimits()
	m := newMsg()
	if decode(schemas.Protobuf, lim, data, m) != nil || check(m) != nil {
		return // only valid messages need to read alike in every form
	}
	m.ProtoReflect().SetUnknown(nil) // only protobuf carries them
	pbuf, err := encode(schemas.Protobuf, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string][]byte{
		"protobuf":        pbuf,
		"framed protobuf": append(schemas.AppendFrame(nil, 3, m.ProtoReflect().Descriptor()), pbuf...),
	}
	for _, c := range []schemas.Codec{schemas.JSON, schemas.ProtoJSON, schemas.ProtoJSONNames} {
		b, err := encode(c, nil, m)
		if err != nil {
			return // a value JSON cannot carry (NaN)
		}
		forms[c.String()] = b
		forms["framed "+c.String()] = append([]byte{0, 0, 0, 0, 9}, b...)
	}
	for name, b := range forms {
		got := newMsg()
		if err := decode(schemas.Protobuf, lim, b, got); err != nil {
			t.Fatalf("%s %q: %v", name, b, err)
		}
		if !proto.Equal(got, m) {
			t.Fatalf("%s: decoded\n%v\nwant\n%v", name, got, m)
		}
	}
}
