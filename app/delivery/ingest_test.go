package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pushdesk/pushdesk/app/apierr"
	"github.com/pushdesk/pushdesk/app/ids"
)

// A call that gives up while another call holds its idempotency key gets
// the contract's 503, not a 500.
func TestIngestWaitingOnAKeyEndsWith503(t *testing.T) {
	a := testApp(t, nil)
	ctx := context.Background()
	if err := a.Redis.Do(ctx, a.Redis.B().Set().Key(keyIdempotency("held")).Value(idemPending).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := a.Ingest(wait, &IngestRequest{UIDs: []uint64{7}, Kind: "comment", Body: json.RawMessage(`{}`), IdempotencyKey: "held"})
	var e *apierr.Error
	if !errors.As(err, &e) || e.Status != 503 {
		t.Fatalf("err = %v, want the 503 unavailable error", err)
	}
}

// flakyQueue records what is enqueued and fails the next failFast fast
// enqueues: fault injection at the queue boundary (routes and last seen
// still go to the real Redis and MySQL).
type flakyQueue struct {
	mu       sync.Mutex
	failFast int
	fast     []*Delivery
	delayed  []*Delivery
}

func (q *flakyQueue) EnqueueDeliver(_ context.Context, ds []*Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failFast > 0 {
		q.failFast--
		return errors.New("injected: queue unreachable")
	}
	q.fast = append(q.fast, ds...)
	return nil
}

func (q *flakyQueue) EnqueueDelayed(_ context.Context, d *Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.delayed = append(q.delayed, d)
	return nil
}

// A call whose fast enqueue fails after its delayed part went in is
// retried with the same idempotency key: the retry enqueues the fast part
// under the first call's ids and the delayed part not again.
func TestIngestRetryAfterAPartialEnqueueRepeatsNothing(t *testing.T) {
	q := &flakyQueue{failFast: 1}
	a := testApp(t, q)
	ctx := context.Background()
	const away, fresh = 501, 502     // away: seen two days ago (delayed); fresh: never seen (fast)
	a.Clock.Advance(-48 * time.Hour) // away was last here two days ago
	a.Activity.Touch(ctx, away)
	a.Clock.Reset()
	req := &IngestRequest{UIDs: []uint64{away, fresh}, Kind: "comment", Body: json.RawMessage(`{"n":1}`), IdempotencyKey: "partial-1"}

	if _, err := a.Ingest(ctx, req); err == nil {
		t.Fatal("the first call succeeded although its fast enqueue failed")
	}
	if len(q.delayed) != 1 || len(q.fast) != 0 {
		t.Fatalf("after the failed call: %d delayed, %d fast deliveries; want 1, 0", len(q.delayed), len(q.fast))
	}
	first := q.delayed[0]

	res, err := a.Ingest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate || res.Accepted != 2 || len(res.IDs) != 2 {
		t.Fatalf("retry = %+v", res)
	}
	if len(q.delayed) != 1 {
		t.Fatalf("the retry enqueued the delayed part again: %d delayed deliveries", len(q.delayed))
	}
	if len(q.fast) != 1 || len(q.fast[0].UIDs) != 1 || q.fast[0].UIDs[0] != fresh {
		t.Fatalf("fast deliveries after the retry: %+v", q.fast)
	}
	if res.IDs[0] != ids.Format(first.IDs[0]) || res.IDs[1] != ids.Format(q.fast[0].IDs[0]) {
		t.Fatalf("answer ids %v do not name the enqueued messages (delayed %d, fast %d)", res.IDs, first.IDs[0], q.fast[0].IDs[0])
	}

	again, err := a.Ingest(ctx, req)
	if err != nil || !again.Duplicate || !reflect.DeepEqual(again.IDs, res.IDs) {
		t.Fatalf("third call = %+v, %v; want a duplicate of %v", again, err, res.IDs)
	}
	if len(q.delayed) != 1 || len(q.fast) != 1 {
		t.Fatalf("the duplicate enqueued: %d delayed, %d fast", len(q.delayed), len(q.fast))
	}
	if n, _ := a.Redis.Do(ctx, a.Redis.B().Exists().Key(keyIdempotencyPlan("partial-1")).Build()).AsInt64(); n != 0 {
		t.Fatal("the spent plan was left behind")
	}
}

// A key given twice in an ingest body is refused, not taken as the last.
func TestIngestRefusesDuplicateKeys(t *testing.T) {
	for _, body := range []string{
		`{"to_uid":1,"to_uid":2,"kind":"k","body":{}}`,
		`{"to_uid":1,"kind":"k","kind":"j","body":{}}`,
	} {
		if _, err := ParseIngest([]byte(body)); err == nil {
			t.Errorf("ParseIngest(%s) accepted it", body)
		} else if e, ok := apierr.As(err); !ok || e.Status != 400 {
			t.Errorf("ParseIngest(%s) = %v, want a 400", body, err)
		}
	}
	if _, err := ParseIngest([]byte(`{"to_uid":1,"kind":"k","body":{"to_uid":2,"x":{"to_uid":3}}}`)); err != nil {
		t.Errorf("nested keys named like top-level ones: %v", err)
	}
}
