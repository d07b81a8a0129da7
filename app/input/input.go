package input

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"

	"github.com/pushdesk/pushdesk/app/apierr"
)

// Limits from the contract.
const (
	MaxBodyBytes = 16 << 10
	MaxKeyLen    = 128
)

var kindRE = regexp.MustCompile(`^[a-z0-9_.-]{1,32}$`)

// KindBody validates a message's kind and body (a JSON object of at
// most MaxBodyBytes, returned compacted).
func KindBody(rawKind, rawBody json.RawMessage) (string, json.RawMessage, error) {
	var kind string
	if !Present(rawKind) || json.Unmarshal(rawKind, &kind) != nil || !kindRE.MatchString(kind) {
		return "", nil, apierr.Invalid("kind must be a string matching [a-z0-9_.-]{1,32}")
	}
	if !Present(rawBody) || bytes.TrimSpace(rawBody)[0] != '{' {
		return "", nil, apierr.Invalid("body must be a JSON object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, rawBody); err != nil {
		return "", nil, apierr.Invalid("body must be a JSON object")
	}
	if compact.Len() > MaxBodyBytes {
		return "", nil, apierr.New(413, "body_too_large", "body is %d bytes, the limit is %d", compact.Len(), MaxBodyBytes)
	}
	return kind, compact.Bytes(), nil
}

// DuplicateKey finds a key that appears twice in the top-level object of
// raw (already known to be valid JSON): encoding/json would silently take
// the last, so {"to_uid":1,"to_uid":2} would go to user 2.
func DuplicateKey(raw []byte) (string, bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return "", false
		}
		k, _ := t.(string)
		if seen[k] {
			return k, true
		}
		seen[k] = true
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return "", false
		}
	}
	return "", false
}

// Present reports whether a field was given (and not null).
func Present(r json.RawMessage) bool { return len(r) > 0 && string(r) != "null" }

// ParseUID reads a positive user id (a JSON number).
func ParseUID(r json.RawMessage) (uint64, bool) {
	uid, err := strconv.ParseUint(string(r), 10, 63)
	return uid, err == nil && uid > 0
}

// OptString reads an optional string field name of at most MaxKeyLen
// bytes.
func OptString(r json.RawMessage, name string) (string, error) {
	if !Present(r) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", apierr.Invalid("%s must be a string", name)
	}
	if len(s) > MaxKeyLen {
		return "", apierr.Invalid("%s is longer than %d bytes", name, MaxKeyLen)
	}
	return s, nil
}

// Object decodes raw, a request body that must be a JSON object, into v.
func Object(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return apierr.New(400, "invalid_json", "body is not a JSON object: %v", err)
	}
	return nil
}
