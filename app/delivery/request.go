package delivery

import (
	"encoding/json"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/input"
)

// MaxRecipients is the contract's limit of users per ingest call.
const MaxRecipients = 1000

// Delivery is one ingest call's work for the queue: one message per
// recipient, all with the same kind and body. Ids are fixed at ingest, so
// a retried delivery writes and pushes the same ids again (idempotent).
type Delivery struct {
	IDs         []uint64        `json:"ids"`
	UIDs        []uint64        `json:"uids"`
	Kind        string          `json:"kind"`
	Body        json.RawMessage `json:"body"`
	CollapseKey string          `json:"ck,omitempty"`
	At          int64           `json:"at"` // unix ms at ingest
}

// IngestResult is the answer to an ingest call. IDs has one id per
// distinct recipient, in order; Released (an extension) counts recipients
// inactive for too long, whose message was not stored (their id names
// nothing).
type IngestResult struct {
	IDs       []string `json:"ids"`
	Accepted  int      `json:"accepted"`
	Duplicate bool     `json:"duplicate"`
	Released  int      `json:"released,omitempty"`
}

type ingestBody struct {
	ToUID          json.RawMessage `json:"to_uid"`
	ToUIDs         json.RawMessage `json:"to_uids"`
	Kind           json.RawMessage `json:"kind"`
	Body           json.RawMessage `json:"body"`
	CollapseKey    json.RawMessage `json:"collapse_key"`
	IdempotencyKey json.RawMessage `json:"idempotency_key"`
}

// IngestRequest is a validated POST /internal/v1/messages body.
type IngestRequest struct {
	UIDs           []uint64
	Kind           string
	Body           json.RawMessage // compact
	CollapseKey    string
	IdempotencyKey string
}

// ParseIngest validates a raw ingest body against the contract.
func ParseIngest(raw []byte) (*IngestRequest, error) {
	var b ingestBody
	if err := input.Object(raw, &b); err != nil {
		return nil, err
	}
	if k, dup := input.DuplicateKey(raw); dup {
		return nil, apierr.New(400, "invalid_json", "the key %q appears twice", k)
	}
	req := &IngestRequest{}
	hasOne, hasMany := input.Present(b.ToUID), input.Present(b.ToUIDs)
	switch {
	case hasOne && hasMany:
		return nil, apierr.Invalid("give to_uid or to_uids, not both")
	case hasOne:
		uid, ok := input.ParseUID(b.ToUID)
		if !ok {
			return nil, apierr.Invalid("to_uid must be a positive integer")
		}
		req.UIDs = []uint64{uid}
	case hasMany:
		var list []json.RawMessage
		if err := json.Unmarshal(b.ToUIDs, &list); err != nil {
			return nil, apierr.Invalid("to_uids must be an array of positive integers")
		}
		if len(list) == 0 || len(list) > MaxRecipients {
			return nil, apierr.Invalid("to_uids must hold 1 to %d user ids, got %d", MaxRecipients, len(list))
		}
		seen := make(map[uint64]struct{}, len(list))
		for i, r := range list {
			uid, ok := input.ParseUID(r)
			if !ok {
				return nil, apierr.Invalid("to_uids[%d] must be a positive integer", i)
			}
			if _, dup := seen[uid]; dup {
				continue
			}
			seen[uid] = struct{}{}
			req.UIDs = append(req.UIDs, uid)
		}
	default:
		return nil, apierr.Invalid("to_uid or to_uids is required")
	}
	var err error
	if req.Kind, req.Body, err = input.KindBody(b.Kind, b.Body); err != nil {
		return nil, err
	}
	if req.CollapseKey, err = input.OptString(b.CollapseKey, "collapse_key"); err != nil {
		return nil, err
	}
	if req.IdempotencyKey, err = input.OptString(b.IdempotencyKey, "idempotency_key"); err != nil {
		return nil, err
	}
	return req, nil
}
