package schemas

import (
	"fmt"

	"google.golang.org/protobuf/proto"
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

// The codecs. Protobuf is the default and the fast path.
const (
	Protobuf Codec = iota
	JSON
)

func (c Codec) String() string {
	if c == JSON {
		return "json"
	}
	return "protobuf"
}

// ContentType is the header value that names c.
func (c Codec) ContentType() string {
	if c == JSON {
		return ContentTypeJSON
	}
	return ContentTypeProtobuf
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
	if c == JSON {
		return decodeInteractionJSON(data, m)
	}
	return decodeProto(data, m)
}

// DecodeScoreRequest decodes data into m; see DecodeInteraction.
func (c Codec) DecodeScoreRequest(lim Limits, data []byte, m *ScoreRequest) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	if c == JSON {
		return decodeScoreRequestJSON(data, m)
	}
	return decodeProto(data, m)
}

// DecodeScoreResponse decodes data into m; see DecodeInteraction.
func (c Codec) DecodeScoreResponse(lim Limits, data []byte, m *ScoreResponse) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	if c == JSON {
		return decodeScoreResponseJSON(data, m)
	}
	return decodeProto(data, m)
}

// DecodeDecision decodes data into m; see DecodeInteraction.
func (c Codec) DecodeDecision(lim Limits, data []byte, m *Decision) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	if c == JSON {
		return decodeDecisionJSON(data, m)
	}
	return decodeProto(data, m)
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
	if c == JSON {
		return appendJSON(buf, interactionToJSON(m))
	}
	return appendProto(buf, m)
}

// AppendScoreRequest appends the encoding of m to buf.
func (c Codec) AppendScoreRequest(buf []byte, m *ScoreRequest) ([]byte, error) {
	if c == JSON {
		return appendJSON(buf, scoreRequestToJSON(m))
	}
	return appendProto(buf, m)
}

// AppendScoreResponse appends the encoding of m to buf.
func (c Codec) AppendScoreResponse(buf []byte, m *ScoreResponse) ([]byte, error) {
	if c == JSON {
		return appendJSON(buf, scoreResponseToJSON(m))
	}
	return appendProto(buf, m)
}

// AppendDecision appends the encoding of m to buf.
func (c Codec) AppendDecision(buf []byte, m *Decision) ([]byte, error) {
	if c == JSON {
		return appendJSON(buf, decisionToJSON(m))
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
