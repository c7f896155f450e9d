package schemas

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The schema-registry wire format (Confluent's, also written by the
// Apicurio and Karapace serializers): a zero magic byte, the schema's id
// as 4 big-endian bytes, then for protobuf the message's indexes in its
// .proto file (a zigzag varint count then each index; a single 0 byte for
// the first message), then the message itself. The zero byte cannot start
// a message of any other form: it is field number 0 in protobuf, and not
// JSON.
const (
	MagicByte       = 0
	frameHeaderSize = 5
	// maxMessageIndexes bounds the nesting depth a frame may name.
	maxMessageIndexes = 16
)

// Frame is what a record's schema-registry framing said.
type Frame struct {
	Framed   bool
	SchemaID uint32
}

// Unframe strips a schema-registry frame from data, if it has one, and
// says what the payload is: c, or JSON where the payload is a JSON object
// (a framed JSON Schema message, or JSON sent without a content-type
// header; '{' cannot start a message of this schema, whose messages have
// no field 15 group). It refuses a frame it cannot read.
func Unframe(c Codec, data []byte) (Codec, []byte, Frame, error) {
	if len(data) == 0 {
		return c, data, Frame{}, nil
	}
	if data[0] != MagicByte {
		if c == Protobuf && data[0] == '{' {
			c = JSON
		}
		return c, data, Frame{}, nil
	}
	if len(data) < frameHeaderSize {
		return c, nil, Frame{}, invalid("message", "schema-registry frame of %d bytes, shorter than its %d-byte header", len(data), frameHeaderSize)
	}
	f := Frame{Framed: true, SchemaID: binary.BigEndian.Uint32(data[1:frameHeaderSize])}
	rest := data[frameHeaderSize:]
	if c != Protobuf || jsonObject(rest) {
		if c == Protobuf {
			c = JSON
		}
		return c, rest, f, nil
	}
	payload, err := skipMessageIndexes(rest)
	if err != nil {
		return c, nil, f, err
	}
	return c, payload, f, nil
}

// jsonObject reports whether b starts, after JSON's white space, with '{'.
func jsonObject(b []byte) bool {
	for _, x := range b {
		switch x {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// skipMessageIndexes reads a framed protobuf's message indexes and returns
// what follows them.
func skipMessageIndexes(b []byte) ([]byte, error) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return nil, invalid("message", "schema-registry frame: malformed message indexes")
	}
	b = b[n:]
	count := protowire.DecodeZigZag(v)
	if count < 0 || count > maxMessageIndexes {
		return nil, invalid("message", "schema-registry frame: %d message indexes", count)
	}
	for range count {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 || protowire.DecodeZigZag(v) < 0 {
			return nil, invalid("message", "schema-registry frame: malformed message indexes")
		}
		b = b[n:]
	}
	return b, nil
}

// AppendFrame appends the frame header of a protobuf message of type md,
// registered as schema id, in the .proto file that declares it.
func AppendFrame(buf []byte, id uint32, md protoreflect.MessageDescriptor) []byte {
	buf = append(buf, MagicByte)
	buf = binary.BigEndian.AppendUint32(buf, id)
	var path []int
	for d := protoreflect.Descriptor(md); d != nil; d = d.Parent() {
		if m, ok := d.(protoreflect.MessageDescriptor); ok {
			path = append(path, m.Index())
		}
	}
	if len(path) == 1 && path[0] == 0 {
		return append(buf, 0)
	}
	buf = protowire.AppendVarint(buf, protowire.EncodeZigZag(int64(len(path))))
	for i := len(path) - 1; i >= 0; i-- {
		buf = protowire.AppendVarint(buf, protowire.EncodeZigZag(int64(path[i])))
	}
	return buf
}
