package auth

import "github.com/pushdesk/pushdesk/app/apierr"

// Errors a caller may match with errors.Is.
var (
	// ErrUnauthorized is a missing, malformed or expired token.
	ErrUnauthorized = &apierr.Error{Status: 401, Code: "unauthorized", Message: "missing, invalid or expired token"}
	// ErrUnavailable is an opaque token that could not be checked because
	// the user center did not answer (and no cached answer exists).
	ErrUnavailable = &apierr.Error{Status: 503, Code: "auth_unavailable", Message: "the user center is not answering; try again"}
)
