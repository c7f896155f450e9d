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
)

// DeadLetterMaxValueBytes bounds the value of a dead letter.
const DeadLetterMaxValueBytes = 256 << 10

func deadLetter(topic string, partition int, r *record, cause error) kafka.Message {
	field := ""
	var fe *schemas.FieldError
	if errors.As(cause, &fe) {
		field = fe.Field
	}
	headers := append([]kafka.Header{}, r.headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(cause.Error())},
		kafka.Header{Key: HeaderErrorField, Value: []byte(field)},
		kafka.Header{Key: HeaderOriginTopic, Value: []byte(topic)},
		kafka.Header{Key: HeaderOriginPartition, Value: []byte(strconv.Itoa(partition))},
		kafka.Header{Key: HeaderOriginOffset, Value: []byte(strconv.FormatInt(r.offset, 10))},
	)
	value := r.value
	if len(value) > DeadLetterMaxValueBytes {
		headers = append(headers, kafka.Header{Key: HeaderTruncated, Value: []byte(strconv.Itoa(len(value)))})
		value = value[:DeadLetterMaxValueBytes]
	}
	return kafka.Message{Key: r.key, Value: value, Headers: headers}
}

func headerValue(headers []kafka.Header, key string) string {
	for _, h := range headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
