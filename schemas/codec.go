package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// HeaderContentType is the Kafka header that names a message's codec.
// Messages without it are protobuf.
const HeaderContentType = "content-type"

// Content types carried in HeaderContentType.
const (
	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"
)

// Codec is a wire form of the messages.
type Codec uint8

// The codecs. Protobuf is the default and the fast path. The JSON forms
// share the content type application/json: JSON decodes any of them (see
// DecodeScoreRequestForm), and encodes the project's simple form; ProtoJSON
// and ProtoJSONNames are protobuf's canonical JSON mapping (protojson), the
// first with lowerCamelCase names, as protojson, Java's JsonFormat and
// Python's MessageToJson write it, the second with the .proto's names.
const (
	Protobuf Codec = iota
	JSON
	ProtoJSON
	ProtoJSONNames
)

func (c Codec) String() string {
	switch c {
	case JSON:
		return "json"
	case ProtoJSON:
		return "protojson"
	case ProtoJSONNames:
		return "protojson-names"
	}
	return "protobuf"
}

// ContentType is the header value that names c.
func (c Codec) ContentType() string {
	if c == Protobuf {
		return ContentTypeProtobuf
	}
	return ContentTypeJSON
}

// CodecFor maps a content-type header value to its codec; an absent header
// (empty value) means protobuf.
func CodecFor(contentType string) (Codec, error) {
	switch contentType {
	case "", ContentTypeProtobuf, "application/protobuf":
		return Protobuf, nil
	case ContentTypeJSON:
		return JSON, nil
	default:
		return 0, invalid(HeaderContentType+" header", "unknown content type %.64q", contentType)
	}
}

var unmarshal = proto.UnmarshalOptions{DiscardUnknown: false}

// DecodeInteraction decodes data into m, reusing m's memory. It checks the
// size limit before decoding and the encoding itself; the field limits are
// checked by Limits.CheckInteraction.
func (c Codec) DecodeInteraction(lim Limits, data []byte, m *Interaction) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	_, err := c.decodeInteraction(data, m)
	return err
}

// DecodeScoreRequest decodes data into m; see DecodeInteraction.
func (c Codec) DecodeScoreRequest(lim Limits, data []byte, m *ScoreRequest) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	_, err := c.decodeScoreRequest(data, m)
	return err
}

// DecodeScoreResponse decodes data into m; see DecodeInteraction.
func (c Codec) DecodeScoreResponse(lim Limits, data []byte, m *ScoreResponse) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	_, err := c.decodeScoreResponse(data, m)
	return err
}

// DecodeDecision decodes data into m; see DecodeInteraction.
func (c Codec) DecodeDecision(lim Limits, data []byte, m *Decision) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	_, err := c.decodeDecision(data, m)
	return err
}

// DecodeScoreRequestForm is DecodeScoreRequest, and returns the codec of
// the form the message was in: for JSON, which of its forms, so that a
// response can answer in its request's form.
func (c Codec) DecodeScoreRequestForm(lim Limits, data []byte, m *ScoreRequest) (Codec, error) {
	if err := lim.CheckSize(len(data)); err != nil {
		return c, err
	}
	return c.decodeScoreRequest(data, m)
}

func (c Codec) decodeInteraction(data []byte, m *Interaction) (Codec, error) {
	return decodeForm(c, data, m, decodeInteractionJSON)
}

func (c Codec) decodeScoreRequest(data []byte, m *ScoreRequest) (Codec, error) {
	return decodeForm(c, data, m, decodeScoreRequestJSON)
}

func (c Codec) decodeScoreResponse(data []byte, m *ScoreResponse) (Codec, error) {
	return decodeForm(c, data, m, decodeScoreResponseJSON)
}

func (c Codec) decodeDecision(data []byte, m *Decision) (Codec, error) {
	return decodeForm(c, data, m, decodeDecisionJSON)
}

// decodeForm decodes data, in c's form, into m: for JSON, in whichever of
// its forms data is. A schema-registry frame is stripped first (Unframe). Object keys in lowerCamelCase are protobuf's
// canonical JSON; otherwise the simple form is tried, then the canonical
// mapping with the .proto's names (enum names such as "EVENT_TYPE_CLICK",
// 64-bit integers as strings), and the simple form's error reported if
// neither reads it.
func decodeForm[M proto.Message](c Codec, data []byte, m M, simple func([]byte, M) error) (Codec, error) {
	c, data, _, err := Unframe(c, data)
	if err != nil {
		return c, err
	}
	switch c {
	case Protobuf:
		return c, decodeProto(data, m)
	case ProtoJSON, ProtoJSONNames:
		return c, decodeProtoJSON(data, m)
	}
	if camelKeys(data) {
		return ProtoJSON, decodeProtoJSON(data, m)
	}
	err = simple(data, m)
	if err == nil {
		return JSON, nil
	}
	// A field missing is missing in every form: say so.
	var fe *FieldError
	if errors.As(err, &fe) && fe.Reason == reasonMissing {
		return JSON, err
	}
	if decodeProtoJSON(data, m) == nil {
		return ProtoJSONNames, nil
	}
	return JSON, err
}

// unmarshalJSON is strict: with DiscardUnknown, protojson would also drop
// enum names it does not know, leaving the field unset without a word.
var unmarshalJSON = protojson.UnmarshalOptions{}

func decodeProtoJSON(data []byte, m proto.Message) error {
	proto.Reset(m)
	if err := unmarshalJSON.Unmarshal(data, m); err != nil {
		return invalid("message", "malformed JSON: %v", err)
	}
	return knownEnums(m.ProtoReflect())
}

// knownEnums reports an enum field holding a number its enum does not
// name, which protojson accepts (enums are open) and no other form can
// carry.
func knownEnums(m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.EnumKind && !fd.IsList() && !fd.IsMap():
			if fd.Enum().Values().ByNumber(v.Enum()) == nil {
				err = invalid(string(fd.Name()), "unknown value %d", v.Enum())
			}
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = knownEnums(v.List().Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			err = knownEnums(v.Message())
		}
		return err == nil
	})
	return err
}

// camelKeys reports whether data is a JSON object with a top-level key
// holding an upper-case letter: protobuf's lowerCamelCase names, which
// the simple form's snake_case names never are.
func camelKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		if key, ok := t.(string); ok && strings.ContainsFunc(key, unicode.IsUpper) {
			return true
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

func decodeProto(data []byte, m proto.Message) error {
	proto.Reset(m)
	if err := unmarshal.Unmarshal(data, m); err != nil {
		return invalid("message", "malformed protobuf: %v", err)
	}
	return nil
}

// AppendInteraction appends the encoding of m to buf.
func (c Codec) AppendInteraction(buf []byte, m *Interaction) ([]byte, error) {
	switch c {
	case JSON:
		return appendJSON(buf, interactionToJSON(m))
	case ProtoJSON, ProtoJSONNames:
		return appendProtoJSON(c, buf, m)
	}
	return appendProto(buf, m)
}

// AppendScoreRequest appends the encoding of m to buf.
func (c Codec) AppendScoreRequest(buf []byte, m *ScoreRequest) ([]byte, error) {
	switch c {
	case JSON:
		return appendJSON(buf, scoreRequestToJSON(m))
	case ProtoJSON, ProtoJSONNames:
		return appendProtoJSON(c, buf, m)
	}
	return appendProto(buf, m)
}

// AppendScoreResponse appends the encoding of m to buf.
func (c Codec) AppendScoreResponse(buf []byte, m *ScoreResponse) ([]byte, error) {
	switch c {
	case JSON:
		return appendJSON(buf, scoreResponseToJSON(m))
	case ProtoJSON, ProtoJSONNames:
		return appendProtoJSON(c, buf, m)
	}
	return appendProto(buf, m)
}

// AppendDecision appends the encoding of m to buf.
func (c Codec) AppendDecision(buf []byte, m *Decision) ([]byte, error) {
	switch c {
	case JSON:
		return appendJSON(buf, decisionToJSON(m))
	case ProtoJSON, ProtoJSONNames:
		return appendProtoJSON(c, buf, m)
	}
	return appendProto(buf, m)
}

var marshal = proto.MarshalOptions{Deterministic: true}

func appendProto(buf []byte, m proto.Message) ([]byte, error) {
	out, err := marshal.MarshalAppend(buf, m)
	if err != nil {
		return buf, fmt.Errorf("encoding %T: %w", m, err)
	}
	return out, nil
}

var (
	marshalJSON      = protojson.MarshalOptions{}
	marshalJSONNames = protojson.MarshalOptions{UseProtoNames: true}
)

func appendProtoJSON(c Codec, buf []byte, m proto.Message) ([]byte, error) {
	o := marshalJSON
	if c == ProtoJSONNames {
		o = marshalJSONNames
	}
	out, err := o.MarshalAppend(buf, m)
	if err != nil {
		return buf, fmt.Errorf("encoding %T: %w", m, err)
	}
	return out, nil
}
