package app

import (
	"errors"
	"fmt"
)

// Error is an error a client caused or must be told about. Handlers render
// it as the contract's body {"error":{"code","message"}} with Status.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid builds a 400 invalid_input error.
func Invalid(format string, args ...any) *Error {
	return Errorf(400, "invalid_input", format, args...)
}

var (
	// ErrUnauthorized is a missing, malformed or expired token.
	ErrUnauthorized = &Error{Status: 401, Code: "unauthorized", Message: "missing, invalid or expired token"}
	// ErrNotFound is a message that does not exist or is not the caller's.
	ErrNotFound = &Error{Status: 404, Code: "not_found", Message: "no such message"}
	// ErrUnavailable is a dependency (Redis, MySQL) that did not answer.
	ErrUnavailable = &Error{Status: 503, Code: "unavailable", Message: "a dependency is down, try again"}
)

// AsError returns the *Error inside err, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
