package consumers

import (
	"context"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/banditstream/banditstream/schemas"
)

// SchemaRegistry is a schema registry (schemas/registry.Registry). Records
// read in its wire format are accepted only with a schema id it lists
// for the topic; protobuf values written are framed with the id of the
// schema it holds for them. Its errors are schemas.ErrInvalid when the
// record is at fault (dead-lettered) and transient otherwise (retried).
type SchemaRegistry interface {
	Accept(ctx context.Context, topic string, name protoreflect.FullName, id uint32) error
	Prefix(ctx context.Context, topic string, md protoreflect.MessageDescriptor) ([]byte, error)
}

var (
	interactionType = (&schemas.Interaction{}).ProtoReflect().Descriptor()
	requestType     = (&schemas.ScoreRequest{}).ProtoReflect().Descriptor()
	responseType    = (&schemas.ScoreResponse{}).ProtoReflect().Descriptor()
	decisionType    = (&schemas.Decision{}).ProtoReflect().Descriptor()
)

// payload returns the codec and the bytes of r's message: without its
// schema-registry frame, if it has one, whose schema id reg (if set) must
// accept for topic's messages of type md. The record's size is checked
// first, frame included.
func payload(ctx context.Context, lim schemas.Limits, reg SchemaRegistry, topic string, md protoreflect.MessageDescriptor, r *record) (schemas.Codec, []byte, error) {
	if err := lim.CheckSize(len(r.value)); err != nil {
		return 0, nil, err
	}
	codec, err := schemas.CodecFor(headerValue(r.headers, schemas.HeaderContentType))
	if err != nil {
		return 0, nil, err
	}
	codec, data, f, err := schemas.Unframe(codec, r.value)
	if err != nil {
		return 0, nil, err
	}
	if f.Framed && reg != nil {
		if err := reg.Accept(ctx, topic, md.FullName(), f.SchemaID); err != nil {
			return 0, nil, err
		}
	}
	return codec, data, nil
}

// maxFramedTopics bounds the frames a scoring worker keeps, one per topic
// written (reply topics are many where clients choose them).
const maxFramedTopics = 10_000
