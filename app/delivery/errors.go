package delivery

import "github.com/pushdesk/pushdesk/app/apierr"

// ErrInProgress is an ingest call whose idempotency key another call still
// holds after the wait: the client retries.
var ErrInProgress = &apierr.Error{Status: 409, Code: "in_progress", Message: "a request with this idempotency_key is still being processed; retry"}
