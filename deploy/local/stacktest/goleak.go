package stacktest

import "go.uber.org/goleak"

// KafkaIdleGoroutines are the goroutines kafka-go's transport keeps with
// its idle connections, for reuse: goleak checks of tests that talk to
// Kafka ignore them.
func KafkaIdleGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go/protocol.(*Conn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go.(*conn).run"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	}
}
