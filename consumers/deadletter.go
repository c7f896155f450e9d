package consumers

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/banditstream/banditstream/schemas"
)

// A record that cannot be processed goes to its topic's dead-letter topic
// (schemas.DeadLetterTopic) with the reason, so it never blocks its
// partition and can be fixed and re-driven.

// Dead-letter headers, added to the record's own.
const (
	HeaderError           = "dlq-error"
	HeaderErrorField      = "dlq-error-field"
	HeaderOriginTopic     = "dlq-origin-topic"
	HeaderOriginPartition = "dlq-origin-partition"
	HeaderOriginOffset    = "dlq-origin-offset"
	// HeaderTruncated holds the original size of a value cut to
	// DeadLetterMaxValueBytes, so an oversize record cannot block its
	// partition by being too large for the dead-letter topic as well.
	HeaderTruncated = "dlq-value-truncated"
	// HeaderKeyTruncated holds the original size of a key cut to
	// DeadLetterMaxKeyBytes.
	HeaderKeyTruncated = "dlq-key-truncated"
	// HeaderHeadersTruncated holds the original size, keys and values, of
	// the record's headers when some were dropped or cut to stay within
	// DeadLetterMaxHeaderBytes.
	HeaderHeadersTruncated = "dlq-headers-truncated"
)

// Bounds of a dead letter's parts. Together (with the dlq-* headers) they
// stay well under Kafka's default message.max.bytes of about 1 MB, so any
// record, however large its key or headers, makes a dead letter the
// dead-letter topic accepts.
const (
	DeadLetterMaxValueBytes  = 256 << 10
	DeadLetterMaxKeyBytes    = 16 << 10
	DeadLetterMaxHeaderBytes = 64 << 10
	// deadLetterMaxHeaderValue bounds one header's value, and
	// deadLetterMaxErrorBytes the reason.
	deadLetterMaxHeaderValue = 16 << 10
	deadLetterMaxErrorBytes  = 4 << 10
)

func deadLetter(topic string, partition int, r *record, cause error) kafka.Message {
	field := ""
	var fe *schemas.FieldError
	if errors.As(cause, &fe) {
		field = fe.Field
	}
	headers, size, cut := boundedHeaders(r.headers)
	reason := cause.Error()
	if len(reason) > deadLetterMaxErrorBytes {
		reason = reason[:deadLetterMaxErrorBytes]
	}
	if len(field) > 256 {
		field = field[:256]
	}
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(reason)},
		kafka.Header{Key: HeaderErrorField, Value: []byte(field)},
		kafka.Header{Key: HeaderOriginTopic, Value: []byte(topic)},
		kafka.Header{Key: HeaderOriginPartition, Value: []byte(strconv.Itoa(partition))},
		kafka.Header{Key: HeaderOriginOffset, Value: []byte(strconv.FormatInt(r.offset, 10))},
	)
	if cut {
		headers = append(headers, kafka.Header{Key: HeaderHeadersTruncated, Value: []byte(strconv.Itoa(size))})
	}
	key := r.key
	if len(key) > DeadLetterMaxKeyBytes {
		headers = append(headers, kafka.Header{Key: HeaderKeyTruncated, Value: []byte(strconv.Itoa(len(key)))})
		key = key[:DeadLetterMaxKeyBytes]
	}
	value := r.value
	if len(value) > DeadLetterMaxValueBytes {
		headers = append(headers, kafka.Header{Key: HeaderTruncated, Value: []byte(strconv.Itoa(len(value)))})
		value = value[:DeadLetterMaxValueBytes]
	}
	return kafka.Message{Key: key, Value: value, Headers: headers}
}

// boundedHeaders copies headers, each value cut to deadLetterMaxHeaderValue
// and the whole to DeadLetterMaxHeaderBytes (later headers dropped, a key
// too long to keep dropped with its value). It returns the original size
// and whether anything was cut.
func boundedHeaders(headers []kafka.Header) (out []kafka.Header, size int, cut bool) {
	out = make([]kafka.Header, 0, len(headers)+8)
	kept := 0
	for _, h := range headers {
		size += len(h.Key) + len(h.Value)
		v := h.Value
		if len(v) > deadLetterMaxHeaderValue {
			v, cut = v[:deadLetterMaxHeaderValue], true
		}
		if len(h.Key) > 256 || kept+len(h.Key)+len(v) > DeadLetterMaxHeaderBytes {
			cut = true
			continue
		}
		kept += len(h.Key) + len(v)
		out = append(out, kafka.Header{Key: h.Key, Value: v})
	}
	return out, size, cut
}

// reducedDeadLetter is dead letter m cut to its origin and reason: the
// value dropped (its size in dlq-value-truncated), the key cut to 256
// bytes, only the dlq-* headers kept. It is what is written when even the
// bounded dead letter is larger than its topic accepts.
func reducedDeadLetter(m kafka.Message) kafka.Message {
	out := kafka.Message{Topic: m.Topic, Key: m.Key}
	// The sizes of the original record: those a cut already noted, or
	// those of m.
	keySize, valueSize := strconv.Itoa(len(m.Key)), strconv.Itoa(len(m.Value))
	keyCut := len(m.Key) > 256
	headerSize, dropped := 0, false
	for _, h := range m.Headers {
		switch {
		case h.Key == HeaderKeyTruncated:
			keySize, keyCut = string(h.Value), true
		case h.Key == HeaderTruncated:
			valueSize = string(h.Value)
		case strings.HasPrefix(h.Key, "dlq-"):
			out.Headers = append(out.Headers, h)
		default:
			headerSize += len(h.Key) + len(h.Value)
			dropped = true
		}
	}
	if len(out.Key) > 256 {
		out.Key = out.Key[:256]
	}
	if keyCut {
		out.Headers = append(out.Headers, kafka.Header{Key: HeaderKeyTruncated, Value: []byte(keySize)})
	}
	out.Headers = append(out.Headers, kafka.Header{Key: HeaderTruncated, Value: []byte(valueSize)})
	if dropped && headerValue(m.Headers, HeaderHeadersTruncated) == "" {
		out.Headers = append(out.Headers, kafka.Header{Key: HeaderHeadersTruncated, Value: []byte(strconv.Itoa(headerSize))})
	}
	return out
}

// writeDeadLetters writes dead letters, each reduced (reducedDeadLetter)
// if its topic refuses it as too large, so that no record's dead letter
// can be refused for its size for ever.
func writeDeadLetters(ctx context.Context, w MessageWriter, msgs []kafka.Message) error {
	err := w.WriteMessages(ctx, msgs...)
	var werrs kafka.WriteErrors
	switch {
	case err == nil:
		return nil
	case errors.As(err, &werrs) && len(werrs) == len(msgs):
		// A broker refuses a whole partition's batch past the topic's
		// limit: the refused ones are written again one by one.
		var large []kafka.Message
		for i, e := range werrs {
			if e == nil {
				continue
			}
			if !isTooLarge(e) {
				return err
			}
			large = append(large, msgs[i])
		}
		msgs = large
	case !isTooLarge(err):
		return err
	}
	for _, m := range msgs {
		err := w.WriteMessages(ctx, m)
		if tooLarge(err) {
			err = w.WriteMessages(ctx, reducedDeadLetter(m))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// tooLarge reports whether a write failed because a message is larger than
// the writer or its topic accepts.
func tooLarge(err error) bool { return anyWriteError(err, isTooLarge) }

func isTooLarge(err error) bool {
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

// refusedForGood reports a broker's refusal of a message or its topic that
// no retry changes: a topic the client may not write or whose name or
// policy rejects it, a record it finds invalid. (Too large is handled
// apart: the message may fit alone.) Anything else — a broker or leader
// unavailable, a timeout, an unknown topic that may yet be created — is
// transient and retried.
func refusedForGood(err error) bool {
	return anyWriteError(err, func(err error) bool {
		for _, code := range []kafka.Error{kafka.TopicAuthorizationFailed, kafka.InvalidTopic, kafka.PolicyViolation, kafka.InvalidRecord} {
			if errors.Is(err, code) {
				return true
			}
		}
		return false
	})
}

// anyWriteError reports whether err, or with an error per message one of
// them, satisfies is.
func anyWriteError(err error, is func(error) bool) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil && is(e) {
				return true
			}
		}
		return false
	}
	return err != nil && is(err)
}

func headerValue(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
