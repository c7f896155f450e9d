package consumers

import (
	"errors"
	"strconv"

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

func headerValue(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
