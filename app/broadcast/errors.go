package broadcast

import (
	"errors"

	"github.com/pushdesk/pushdesk/app/apierr"
)

// Errors a caller may match with errors.Is.
var (
	// ErrFanoutBusy is a fan-out already running elsewhere; retry later.
	ErrFanoutBusy = errors.New("broadcast fan-out already running")
	// ErrNotPending is a cancel of a broadcast that is not scheduled or
	// recurring (sent, cancelled, or never made).
	ErrNotPending = &apierr.Error{Status: 404, Code: "not_found", Message: "no scheduled or recurring broadcast with this id"}
)
