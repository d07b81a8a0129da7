package chat

import (
	"errors"
	"fmt"
)

// Error is a chat request a client got wrong, or must retry. Code is the
// contract's error-frame code (an HTTP status); Name its snake_case form
// for REST bodies.
type Error struct {
	Code    int
	Name    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Name, e.Message) }

func newError(code int, name, format string, args ...any) *Error {
	return &Error{Code: code, Name: name, Message: fmt.Sprintf(format, args...)}
}

// Errors a caller may match with errors.Is.
var (
	ErrEmptyText      = newError(400, "invalid_input", "text must not be empty")
	ErrTextTooLong    = newError(400, "invalid_input", "text is longer than 4 KiB")
	ErrClientMsgID    = newError(400, "invalid_input", "client_msg_id must be at most 64 characters")
	ErrNoConversation = newError(404, "not_found", "no such conversation")
	ErrNotYours       = newError(403, "forbidden", "not your conversation")
	ErrUsersCannot    = newError(403, "forbidden", "only agents may do this")
	ErrClosed         = newError(409, "conflict", "the conversation is closed")
	ErrTargetOffline  = newError(409, "conflict", "the target agent is not online")
	ErrAssignLocked   = newError(416, "try_again", "Please try again")
	ErrTooManyLines   = newError(429, "rate_limited", "too many lines, slow down")
	ErrBadStatus      = newError(400, "invalid_input", `status must be "online" or "away"`)
	ErrUnavailable    = newError(503, "unavailable", "temporarily unavailable, try again")
	ErrInvalidLogin   = newError(401, "invalid_login", "wrong email or password")
	ErrLoginThrottled = newError(429, "too_many_attempts", "too many failed logins, wait and try again")
	ErrAgentDisabled  = newError(403, "forbidden", "this agent login is disabled")
)

// AsError returns the *Error in err, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ThrottledError is ErrLoginThrottled with how long to wait.
type ThrottledError struct{ RetryAfterS int }

func (e *ThrottledError) Error() string { return ErrLoginThrottled.Error() }

// Unwrap makes errors.Is(err, ErrLoginThrottled) and AsError work.
func (e *ThrottledError) Unwrap() error { return ErrLoginThrottled }
