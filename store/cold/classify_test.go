package cold

import (
	"errors"
	"fmt"
	"testing"

	"github.com/gocql/gocql"

	"github.com/banditstream/banditstream/store/state"
)

type requestError struct {
	code int
	msg  string
}

func (e requestError) Code() int       { return e.code }
func (e requestError) Message() string { return e.msg }
func (e requestError) Error() string   { return e.msg }

// Refusals a retry cannot change are told from those it can.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err     error
		refused bool
	}{
		{requestError{gocql.ErrCodeInvalid, "unconfigured table user_state"}, true},
		{requestError{gocql.ErrCodeUnauthorized, "User x has no MODIFY permission"}, true},
		{requestError{gocql.ErrCodeProtocol, "Request is too big: length 17190138 exceeds maximum allowed length 16777216."}, true},
		{requestError{gocql.ErrCodeProtocol, "Invalid or unsupported protocol version"}, false},
		{requestError{gocql.ErrCodeWriteTimeout, "Operation timed out"}, false},
		{requestError{gocql.ErrCodeUnavailable, "Cannot achieve consistency level"}, false},
		{requestError{gocql.ErrCodeOverloaded, "overloaded"}, false},
		{gocql.ErrNoConnections, false},
		{nil, false},
	} {
		err := classify(fmt.Errorf("writing: %w", c.err))
		if c.err == nil {
			err = classify(nil)
		}
		if errors.Is(err, state.ErrRefused) != c.refused {
			t.Errorf("%v: refused %v, want %v", c.err, !c.refused, c.refused)
		}
	}
}
