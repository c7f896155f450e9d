package schemas

import (
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits bounds what a message may contain. The zero value is not useful;
// start from DefaultLimits.
type Limits struct {
	// MaxMessageBytes bounds an encoded message. Default 1 MiB.
	MaxMessageBytes int
	// MaxIDBytes bounds event, user, item, session and request ids.
	// Default 256.
	MaxIDBytes int
	// MaxContextBytes bounds the context. Default 256.
	MaxContextBytes int
	// MaxCandidates bounds a score request's candidate list. Default 10,000.
	MaxCandidates int
	// MaxK bounds k. Default 10,000.
	MaxK int
	// MaxAttributes bounds the number of item attributes. Default 64.
	MaxAttributes int
	// MaxAttributeBytes bounds one attribute's key plus value. Default 1024.
	MaxAttributeBytes int
	// MaxFutureSkew bounds how far ahead of the receiver's clock an event
	// time may be. Old events stay valid, so a replay of old data passes.
	// Default 24 h.
	MaxFutureSkew time.Duration
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxMessageBytes:   1 << 20,
		MaxIDBytes:        256,
		MaxContextBytes:   256,
		MaxCandidates:     10_000,
		MaxK:              10_000,
		MaxAttributes:     64,
		MaxAttributeBytes: 1024,
		MaxFutureSkew:     24 * time.Hour,
	}
}

// Validate reports a limit that cannot be meant.
func (l Limits) Validate() error {
	if l.MaxMessageBytes < 64 || l.MaxIDBytes < 1 || l.MaxContextBytes < 0 || l.MaxCandidates < 1 ||
		l.MaxK < 1 || l.MaxAttributes < 0 || l.MaxAttributeBytes < 0 || l.MaxFutureSkew < 0 {
		return errors.New("schemas: every limit must be positive (message bytes at least 64)")
	}
	return nil
}

// CheckSize rejects an encoded message larger than MaxMessageBytes. Decoders
// call it before decoding.
func (l Limits) CheckSize(n int) error {
	if n > l.MaxMessageBytes {
		return invalid("message", "%d bytes exceeds the limit of %d", n, l.MaxMessageBytes)
	}
	return nil
}

// CheckInteraction validates an event received at now.
func (l Limits) CheckInteraction(m *Interaction, now time.Time) error {
	if err := l.checkID("event_id", m.GetEventId(), true); err != nil {
		return err
	}
	if err := l.checkID("user_id", m.GetUserId(), true); err != nil {
		return err
	}
	if err := l.checkID("item_id", m.GetItemId(), true); err != nil {
		return err
	}
	if err := l.checkText("context", m.GetContext(), l.MaxContextBytes); err != nil {
		return err
	}
	if err := l.checkID("session_id", m.GetSessionId(), false); err != nil {
		return err
	}
	if EventTypeName(m.GetType()) == "" {
		return invalid("type", "unknown event type %d", int32(m.GetType()))
	}
	t := m.GetEventTimeMs()
	if t <= 0 {
		return invalid("event_time_ms", "must be a positive Unix time in milliseconds, got %d", t)
	}
	if limit := now.Add(l.MaxFutureSkew).UnixMilli(); t > limit {
		return invalid("event_time_ms", "%d is more than %s ahead of the receiver's clock", t, l.MaxFutureSkew)
	}
	if v := m.GetValue(); math.IsNaN(v) || math.IsInf(v, 0) {
		return invalid("value", "must be finite, got %v", v)
	} else if v < 0 {
		return invalid("value", "must not be negative, got %v", v)
	}
	attrs := m.GetAttributes()
	if len(attrs) > l.MaxAttributes {
		return invalid("attributes", "%d entries exceed the limit of %d", len(attrs), l.MaxAttributes)
	}
	for k, v := range attrs {
		if len(k)+len(v) > l.MaxAttributeBytes {
			return invalid("attributes", "entry %.32q is %d bytes, over the limit of %d", k, len(k)+len(v), l.MaxAttributeBytes)
		}
	}
	return nil
}

// CheckScoreRequest validates a score request. A deadline already past is
// valid: the scorer counts and skips it.
func (l Limits) CheckScoreRequest(m *ScoreRequest) error {
	if err := l.checkID("request_id", m.GetRequestId(), true); err != nil {
		return err
	}
	if err := l.checkID("user_id", m.GetUserId(), true); err != nil {
		return err
	}
	if err := l.checkText("context", m.GetContext(), l.MaxContextBytes); err != nil {
		return err
	}
	c := m.GetCandidates()
	switch {
	case len(c) == 0:
		return invalid("candidates", "at least one candidate is needed")
	case len(c) > l.MaxCandidates:
		return invalid("candidates", "%d exceed the limit of %d", len(c), l.MaxCandidates)
	}
	for i, id := range c {
		if err := l.checkID("candidates", id, true); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Reason = "item " + strconv.Itoa(i) + ": " + fe.Reason
			}
			return err
		}
	}
	if k := m.GetK(); k < 1 {
		return invalid("k", "must be at least 1, got %d", k)
	} else if int(k) > l.MaxK {
		return invalid("k", "%d exceeds the limit of %d", k, l.MaxK)
	}
	if d := m.GetDeadlineMs(); d < 0 {
		return invalid("deadline_ms", "must be a Unix time in milliseconds or 0 for none, got %d", d)
	}
	if s := m.GetSentTimeMs(); s < 0 {
		return invalid("sent_time_ms", "must not be negative, got %d", s)
	}
	if err := checkTopicName(m.GetReplyTopic()); err != nil {
		return err
	}
	if ModeName(m.GetMode()) == "" && m.GetMode() != ModeDefault {
		return invalid("mode", "unknown exploration mode %d", int32(m.GetMode()))
	}
	return nil
}

// CheckScoreResponse validates a response, as clients read it.
func (l Limits) CheckScoreResponse(m *ScoreResponse) error {
	if err := l.checkID("request_id", m.GetRequestId(), true); err != nil {
		return err
	}
	if len(m.GetItems()) > l.MaxK {
		return invalid("items", "%d exceed the limit of %d", len(m.GetItems()), l.MaxK)
	}
	for _, it := range m.GetItems() {
		if err := l.checkID("items", it.GetItemId(), true); err != nil {
			return err
		}
		for _, v := range [...]float64{it.GetScore(), it.GetMean()} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return invalid("items", "item %.32q has a non-finite score", it.GetItemId())
			}
		}
	}
	return nil
}

func (l Limits) checkID(field, s string, required bool) error {
	if s == "" {
		if required {
			return invalid(field, "missing")
		}
		return nil
	}
	return l.checkText(field, s, l.MaxIDBytes)
}

// checkText bounds the length and rejects control characters, which the
// stores use as separators in keys.
func (l Limits) checkText(field, s string, limit int) error {
	if len(s) > limit {
		return invalid(field, "%d bytes exceeds the limit of %d", len(s), limit)
	}
	if printableASCII(s) {
		return nil
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return invalid(field, "control character 0x%02x at byte %d", c, i)
		}
		ascii = ascii && c < utf8.RuneSelf
	}
	// Ids are ASCII almost always: the UTF-8 check only for the others.
	if !ascii && !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	return nil
}

// checkTopicName applies Kafka's rules for topic names (empty is allowed).
func checkTopicName(s string) error {
	if len(s) > 249 {
		return invalid("reply_topic", "%d bytes exceeds Kafka's limit of 249", len(s))
	}
	if s == "." || s == ".." {
		return invalid("reply_topic", "%q is not a valid topic name", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '.' || c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return invalid("reply_topic", "character %q at byte %d is not allowed in a topic name", c, i)
		}
	}
	return nil
}
