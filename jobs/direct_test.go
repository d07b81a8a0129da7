package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/redis/go-redis/v9"
)

// directRig is a Direct whose deliveries a test controls, beside a worker
// that reports the journal tasks it runs.
type directRig struct {
	opt     asynq.RedisConnOpt
	client  *asynq.Client
	insp    *asynq.Inspector
	rdb     redis.UniversalClient // the test's own look at Redis
	direct  *Direct
	queue   Queue
	calls   chan []*app.Delivery // each direct delivery
	journal chan DeliverPayload  // each journal a worker ran
	mu      sync.Mutex
	result  error         // what direct deliveries return
	hold    chan struct{} // if set, deliveries wait for it to close
}

func newDirectRig(t *testing.T, slots int) *directRig {
	t.Helper()
	r := &directRig{opt: testRedisOpt(t), calls: make(chan []*app.Delivery, 16), journal: make(chan DeliverPayload, 16)}
	r.client = asynq.NewClient(r.opt)
	r.insp = asynq.NewInspector(r.opt)
	r.rdb = r.opt.MakeRedisClient().(redis.UniversalClient)
	t.Cleanup(func() { r.client.Close(); r.insp.Close(); r.rdb.Close() })
	deliver := func(ctx context.Context, ds []*app.Delivery, recount bool) error {
		if recount {
			t.Errorf("a direct delivery recounts")
		}
		r.calls <- ds
		r.mu.Lock()
		hold, result := r.hold, r.result
		r.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return result
	}
	r.direct = NewDirect(r.opt, deliver, nil, slots, time.Hour, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.queue = Queue{Client: r.client, Direct: r.direct}
	srv := asynq.NewServer(r.opt, asynq.Config{Concurrency: 2, Queues: map[string]int{QueueFast: 1}, TaskCheckInterval: 50 * time.Millisecond,
		Logger: slogAdapter{slog.New(slog.NewTextHandler(io.Discard, nil))}, LogLevel: asynq.FatalLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypeDeliver, func(_ context.Context, task *asynq.Task) error {
		var p DeliverPayload
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			t.Errorf("journal payload: %v", err)
		}
		r.journal <- p
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	t.Cleanup(func() { r.direct.Shutdown(time.Second) })
	return r
}

// nextQueued waits for the next delivery task a worker runs, failing with
// what after 10 s.
func (r *directRig) nextQueued(t *testing.T, what string) DeliverPayload {
	t.Helper()
	select {
	case p := <-r.journal:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal(what)
		return DeliverPayload{}
	}
}

func (r *directRig) set(result error, hold chan struct{}) {
	r.mu.Lock()
	r.result, r.hold = result, hold
	r.mu.Unlock()
}

func delivery(id uint64) []*app.Delivery {
	return []*app.Delivery{{Kind: "comment", Body: []byte(`{}`), UIDs: []uint64{id}, IDs: []uint64{id}}}
}

// journalGone waits until the journal task of id is deleted (looked up in
// asynq's keys: the Inspector needs asynq's list of queues).
func (r *directRig) journalGone(t *testing.T, id uint64) {
	t.Helper()
	key := "asynq:{" + QueueFast + "}:t:" + journalName(id)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := r.rdb.Exists(context.Background(), key).Result()
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal of %d still there (%d, %v)", id, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func journalName(id uint64) string { n, _ := journalID(delivery(id)); return n }

func TestDirectDeliveryDropsItsJournal(t *testing.T) {
	r := newDirectRig(t, 4)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(101)); err != nil {
		t.Fatal(err)
	}
	if ds := <-r.calls; ds[0].IDs[0] != 101 {
		t.Fatalf("delivered %v, want 101", ds[0].IDs)
	}
	r.journalGone(t, 101)
	select {
	case p := <-r.journal:
		t.Fatalf("a worker ran the journal of a delivery that succeeded: %+v", p)
	case <-time.After(300 * time.Millisecond):
	}
}

// A direct delivery that fails is handed to the workers at once, and the
// workers recount.
func TestFailedDirectDeliveryRunsItsJournalNow(t *testing.T) {
	r := newDirectRig(t, 4)
	r.set(errors.New("mysql is down"), nil)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(102)); err != nil {
		t.Fatal(err)
	}
	<-r.calls
	p := r.nextQueued(t, "a failed delivery was not handed to the workers (its journal is due only in an hour)")
	if !p.Recount || len(p.Deliveries) != 1 || p.Deliveries[0].IDs[0] != 102 {
		t.Fatalf("journal = %+v, want delivery 102, recounted", p)
	}
	r.journalGone(t, 102) // else it would deliver a second time
}

// No free slot, or shut down: the work is queued for the workers as usual.
func TestDirectFallsBackToTheQueue(t *testing.T) {
	r := newDirectRig(t, 1)
	hold := make(chan struct{})
	r.set(nil, hold)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(103)); err != nil {
		t.Fatal(err)
	}
	<-r.calls // the one slot is busy now
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(104)); err != nil {
		t.Fatal(err)
	}
	p := r.nextQueued(t, "the overflow was not queued for the workers")
	if p.Recount || p.Deliveries[0].IDs[0] != 104 {
		t.Fatalf("queued task = %+v, want 104 as a first attempt", p)
	}
	// Shutdown waits for the delivery under way, then takes no more.
	done := make(chan struct{})
	go func() { r.direct.Shutdown(5 * time.Second); close(done) }()
	select {
	case <-done:
		t.Fatal("Shutdown did not wait for the delivery under way")
	case <-time.After(200 * time.Millisecond):
	}
	close(hold)
	<-done
	r.journalGone(t, 103)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(105)); err != nil {
		t.Fatal(err)
	}
	if p := r.nextQueued(t, "after Shutdown the work was not queued"); p.Deliveries[0].IDs[0] != 105 {
		t.Fatalf("queued task = %+v, want 105", p)
	}
	select {
	case ds := <-r.calls:
		t.Fatalf("delivered %v directly after Shutdown", ds[0].IDs)
	default:
	}
}

// A batch whose first message was journaled before (an ingest retried
// under its first ids, batched with other calls) is queued whole for the
// workers, recounting: the earlier journal does not hold the others.
func TestDirectQueuesABatchWhoseJournalExists(t *testing.T) {
	r := newDirectRig(t, 4)
	hold := make(chan struct{})
	r.set(nil, hold)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(106)); err != nil {
		t.Fatal(err)
	}
	<-r.calls
	batch := append(delivery(106), delivery(110)...)
	if err := r.queue.EnqueueDeliver(context.Background(), batch); err != nil {
		t.Fatalf("second journal: %v", err)
	}
	p := r.nextQueued(t, "the batch was not queued for the workers")
	if !p.Recount || len(p.Deliveries) != 2 || p.Deliveries[1].IDs[0] != 110 {
		t.Fatalf("queued = %+v, want both deliveries, recounted", p)
	}
	select {
	case <-r.calls:
		t.Fatal("the batch was delivered directly besides")
	case <-time.After(200 * time.Millisecond):
	}
	close(hold)
	r.journalGone(t, 106)
}

// A shutdown that cannot wait cancels the delivery, whose journal goes to
// the workers at once.
func TestDirectShutdownCancelsAndHandsOver(t *testing.T) {
	r := newDirectRig(t, 4)
	r.set(nil, make(chan struct{})) // never released
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(107)); err != nil {
		t.Fatal(err)
	}
	<-r.calls
	r.direct.Shutdown(100 * time.Millisecond)
	p := r.nextQueued(t, "the cancelled delivery was not handed to the workers")
	if !p.Recount || p.Deliveries[0].IDs[0] != 107 {
		t.Fatalf("journal = %+v, want 107 recounted", p)
	}
	r.journalGone(t, 107)
}

// The journal is dropped even when Redis has lost asynq's list of queues
// (a restart without persistence), which asynq's Inspector needs.
func TestDirectDropsTheJournalAfterRedisLostTheQueueList(t *testing.T) {
	r := newDirectRig(t, 4)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(108)); err != nil {
		t.Fatal(err)
	}
	<-r.calls
	r.journalGone(t, 108)
	// The client listed the queue with its first task and will not again.
	if err := r.rdb.Del(context.Background(), "asynq:queues").Err(); err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	r.set(nil, hold)
	if err := r.queue.EnqueueDeliver(context.Background(), delivery(109)); err != nil {
		t.Fatal(err)
	}
	<-r.calls
	if n, err := r.rdb.Exists(context.Background(), "asynq:{"+QueueFast+"}:t:"+journalName(109)).Result(); err != nil || n != 1 {
		t.Fatalf("journal of 109 = %d, %v; the test needs it made", n, err)
	}
	if _, err := r.insp.GetTaskInfo(QueueFast, journalName(109)); !errors.Is(err, asynq.ErrQueueNotFound) {
		t.Fatalf("Inspector sees the queue (%v); the test needs it unlisted", err)
	}
	close(hold)
	r.journalGone(t, 109)
}
