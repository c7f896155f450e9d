package schemas

import (
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// DecodeScoreRequestAliased decodes a protobuf ScoreRequest into m without
// copying: m's strings point into data, and m's candidate slice is reused.
// It accepts and rejects exactly what DecodeScoreRequest with Protobuf does
// with protobuf, framed or not (see Unframe), but drops unknown fields. data must not change while m is in use, and m
// must not outlive data; it is for hot paths that decode, use and discard
// (the scorer decodes 400-candidate requests this way without allocating).
func DecodeScoreRequestAliased(lim Limits, data []byte, m *ScoreRequest) error {
	if err := lim.CheckSize(len(data)); err != nil {
		return err
	}
	c, data, _, err := Unframe(Protobuf, data)
	if err != nil {
		return err
	}
	if c != Protobuf {
		return invalid("message", "a JSON object, decoded as protobuf")
	}
	old := m.Candidates
	seed := m.Seed
	m.Reset()
	m.Candidates = old[:0]
	defer func() {
		// Drop references into an older buffer beyond the new list.
		if n := len(m.Candidates); n < len(old) {
			clear(old[n:])
		}
	}()
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return malformed(n)
		}
		if !num.IsValid() {
			return invalid("message", "malformed protobuf: field number %d out of range", num)
		}
		data = data[n:]
		if num > 0 && int(num) < len(scoreRequestWire) && scoreRequestWire[num] == typ {
			switch typ {
			case protowire.BytesType:
				b, n := protowire.ConsumeBytes(data)
				if n < 0 {
					return malformed(n)
				}
				data = data[n:]
				if !printableASCII(b) && !utf8.Valid(b) {
					return invalid("message", "malformed protobuf: string field %d contains invalid UTF-8", num)
				}
				s := aliasString(b)
				switch num {
				case 1:
					m.RequestId = s
				case 2:
					m.UserId = s
				case 3:
					m.Context = s
				case 4:
					m.Candidates = append(m.Candidates, s)
				case 7:
					m.ReplyTopic = s
				}
			case protowire.VarintType:
				v, n := protowire.ConsumeVarint(data)
				if n < 0 {
					return malformed(n)
				}
				data = data[n:]
				switch num {
				case 5:
					m.K = int32(v)
				case 6:
					m.DeadlineMs = int64(v)
				case 8:
					m.Mode = ExplorationMode(int32(v))
				case 9:
					if seed == nil {
						seed = new(uint64)
					}
					*seed = v
					m.Seed = seed
				case 10:
					m.SentTimeMs = int64(v)
				case 11:
					m.Explain = v != 0
				case 12:
					m.Propensities = v != 0
				}
			}
			continue
		}
		// An unknown field, or a known one with another wire type (which
		// protobuf also keeps as unknown): skip it.
		n = protowire.ConsumeFieldValue(num, typ, data)
		if n < 0 {
			return malformed(n)
		}
		data = data[n:]
	}
	return nil
}

// scoreRequestWire is the wire type of each ScoreRequest field, by number.
var scoreRequestWire = [...]protowire.Type{
	0: -1, 1: protowire.BytesType, 2: protowire.BytesType, 3: protowire.BytesType, 4: protowire.BytesType,
	5: protowire.VarintType, 6: protowire.VarintType, 7: protowire.BytesType, 8: protowire.VarintType,
	9: protowire.VarintType, 10: protowire.VarintType, 11: protowire.VarintType, 12: protowire.VarintType,
}

func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func malformed(n int) error {
	return invalid("message", "malformed protobuf: %v", protowire.ParseError(n))
}
