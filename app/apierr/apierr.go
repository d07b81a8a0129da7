package apierr

import (
	"errors"
	"fmt"
)

// Error is an error a client caused or must be told about.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New builds an *Error.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid builds a 400 invalid_input error.
func Invalid(format string, args ...any) *Error {
	return New(400, "invalid_input", format, args...)
}

// ErrUnavailable is a dependency (Redis, MySQL) that did not answer.
var ErrUnavailable = &Error{Status: 503, Code: "unavailable", Message: "a dependency is down, try again"}

// As returns the *Error inside err, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
