package consumers_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// kafka-go's transport keeps idle connections with their own
		// goroutines for reuse across tests.
		goleak.IgnoreTopFunction("github.com/segmentio/kafka-go.(*connPool).discover"),
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go/protocol.(*Conn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/segmentio/kafka-go.(*conn).run"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
		// gocql's pool fill goroutines finish a reconnection attempt (a
		// 1 s back-off, longer with a log-in) after the session is closed,
		// then see the pool closed and return; the fault tests that stop
		// Cassandra leave some in flight.
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).fill.func1"),
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).connectMany.func1"),
	)
}
