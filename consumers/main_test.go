package consumers_test

import (
	"testing"

	"github.com/banditstream/banditstream/deploy/local/stacktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(stacktest.KafkaIdleGoroutines(),
		// gocql's pool fill goroutines finish a reconnection attempt (a
		// 1 s back-off, longer with a log-in) after the session is closed,
		// then see the pool closed and return; the fault tests that stop
		// Cassandra leave some in flight.
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).fill.func1"),
		goleak.IgnoreAnyFunction("github.com/gocql/gocql.(*hostConnPool).connectMany.func1"),
	)...)
}
