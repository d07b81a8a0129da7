package app

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// A call that gives up while another call holds its idempotency key gets
// the contract's 503, not a 500.
func TestIngestWaitingOnAKeyEndsWith503(t *testing.T) {
	a := testApp(t)
	ctx := context.Background()
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyIdempotency("held")).Value(idemPending).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := a.Ingest(wait, &IngestRequest{UIDs: []uint64{7}, Kind: "comment", Body: json.RawMessage(`{}`), IdempotencyKey: "held"})
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 {
		t.Fatalf("err = %v, want the 503 unavailable error", err)
	}
}
