package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/redis/go-redis/v9"
)

// JournalAfter is how long a direct delivery's journal task waits before
// a worker may run it: well past a delivery's commit, even a slow one.
const JournalAfter = 60 * time.Second

// directTimeout bounds one direct delivery, so it ends before its journal
// comes due; handOverTimeout bounds each Redis call after it (queueing for
// the workers, dropping the journal), so a shutdown with Redis gone is not
// held up: the journal still comes due.
const (
	directTimeout   = 50 * time.Second
	handOverTimeout = 3 * time.Second
)

// Direct delivers fast work in the process that queued it, without the
// round trips and the wait of a dequeue. The task still goes into asynq
// first, as a journal: scheduled JournalAfter ahead, so a worker runs it
// only if this process did not finish the delivery. The delivery deletes
// its journal once the rows are committed; one that fails (Redis or MySQL
// failed, shutdown cancelled it) is queued for the workers at once, and
// one that never ends (the process died) leaves its journal to come due. A journal that runs recounts (DeliverPayload.Recount), so a
// delivery that went half-way before it failed is not counted twice;
// pushes carry the same ids, which clients dedupe.
//
// Direct is used only while it has a free slot and is not shut down;
// otherwise the task is queued as usual. Safe for concurrent use.
type Direct struct {
	deliver func(context.Context, []*app.Delivery, bool) error
	wake    func() // after queueing for the workers (may be nil)
	client  *asynq.Client
	rdb     redis.UniversalClient // for dropJournal
	log     *slog.Logger
	after   time.Duration
	slots   chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed against wg.Add
	closed bool
	wg     sync.WaitGroup
}

// NewDirect returns a Direct running deliver for up to concurrency
// deliveries at once, with journals due after (JournalAfter in
// production). wake, if set, is called when work is queued for the
// workers instead.
func NewDirect(redisOpt asynq.RedisConnOpt, deliver func(context.Context, []*app.Delivery, bool) error, wake func(), concurrency int, after time.Duration, log *slog.Logger) *Direct {
	ctx, cancel := context.WithCancel(context.Background())
	return &Direct{
		deliver: deliver, wake: wake, client: asynq.NewClient(redisOpt), rdb: redisOpt.MakeRedisClient().(redis.UniversalClient),
		log: log, after: after, slots: make(chan struct{}, max(concurrency, 1)), ctx: ctx, cancel: cancel,
	}
}

// journalID names the journal task of ds: its first message id, so a
// second journal for the same messages is refused.
func journalID(ds []*app.Delivery) (string, bool) {
	for _, d := range ds {
		if len(d.IDs) > 0 {
			return "j:" + strconv.FormatUint(d.IDs[0], 10), true
		}
	}
	return "", false
}

// enqueue journals ds and starts their delivery. handled is false when
// ds should go through the queue instead (no free slot, shut down).
func (d *Direct) enqueue(ctx context.Context, ds []*app.Delivery) (handled bool, err error) {
	id, ok := journalID(ds)
	if !ok {
		return false, nil
	}
	select {
	case d.slots <- struct{}{}:
	default:
		return false, nil
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		<-d.slots
		return false, nil
	}
	d.wg.Add(1)
	d.mu.Unlock()
	started := false
	defer func() {
		if !started {
			<-d.slots
			d.wg.Done()
		}
	}()
	payload, err := json.Marshal(DeliverPayload{Deliveries: ds, Recount: true})
	if err != nil {
		return true, fmt.Errorf("encode delivery: %w", err)
	}
	if _, err := d.client.EnqueueContext(ctx, fastDeliverTask(payload, asynq.TaskID(id), asynq.ProcessIn(d.after))); err != nil {
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			// An earlier attempt journaled the first of these messages (an
			// ingest retried under its first ids), but the batch may hold
			// others: queue it all for the workers, recounting.
			return true, d.queueNow(ctx, payload)
		}
		return true, fmt.Errorf("enqueue delivery: %w", err)
	}
	started = true
	go d.run(id, ds, payload)
	return true, nil
}

func (d *Direct) run(id string, ds []*app.Delivery, payload []byte) {
	defer d.wg.Done()
	defer func() { <-d.slots }()
	ctx, cancel := context.WithTimeout(d.ctx, directTimeout)
	defer cancel()
	if err := d.deliver(ctx, ds, false); err != nil {
		// Hand it to the workers now rather than when the journal comes
		// due: queue it for at once (recounting, like the journal), then
		// drop the journal. If the queueing fails, the journal still
		// comes due.
		qctx, qcancel := context.WithTimeout(context.Background(), handOverTimeout)
		qerr := d.queueNow(qctx, payload)
		qcancel()
		d.log.Warn("direct delivery failed; queued for the workers", "task", id, "err", err, "queue_err", qerr)
		if qerr != nil {
			return
		}
	}
	if err := d.dropJournal(id); err != nil {
		// It comes due later and delivers again, recounting: harmless.
		d.log.Warn("drop delivery journal", "task", id, "err", err)
	}
}

// queueNow queues a (recounting) delivery payload for the workers.
func (d *Direct) queueNow(ctx context.Context, payload []byte) error {
	if _, err := d.client.EnqueueContext(ctx, fastDeliverTask(payload)); err != nil {
		return fmt.Errorf("enqueue delivery: %w", err)
	}
	if d.wake != nil {
		d.wake()
	}
	return nil
}

// dropJournal deletes journal task id while it is still scheduled (once
// due, it runs: a redelivery that recounts, which is harmless). asynq's
// Inspector would refuse whenever Redis lost its list of queues (a
// restart without persistence), so this goes to asynq's keys itself: the
// task hash asynq:{fast}:t:<id> and the zset asynq:{fast}:scheduled. If a
// later asynq names them otherwise, journals simply come due.
func (d *Direct) dropJournal(id string) error {
	prefix := "asynq:{" + QueueFast + "}:"
	ctx, cancel := context.WithTimeout(context.Background(), handOverTimeout)
	defer cancel()
	return dropJournalScript.Run(ctx, d.rdb, []string{prefix + "t:" + id, prefix + "scheduled"}, id).Err()
}

var dropJournalScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'scheduled' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1`)

// Shutdown stops taking deliveries (they go through the queue again) and
// waits for those under way; after wait it cancels them (their journals
// deliver them later).
func (d *Direct) Shutdown(wait time.Duration) {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		d.cancel()
		<-done
	}
	d.cancel()
	_ = d.client.Close()
	_ = d.rdb.Close()
}
