package schemas

import (
	"errors"
	"fmt"
)

// ErrInvalid matches every error about a malformed or out-of-limits
// message, with errors.Is. Such a message goes to the dead-letter topic;
// retrying it cannot help.
var ErrInvalid = errors.New("invalid message")

// FieldError says which field of a message is wrong and why.
type FieldError struct {
	Field  string // the field name as in the .proto file, or "message"
	Reason string
}

func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
