package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/delivery"
)

// Queue names. QueueFast carries fresh messages for active users.
const (
	QueueFast    = "fast"
	QueueDelayed = "delayed"
)

// GroupInactive is the asynq group that batches deliveries on the delayed
// queue (see aggregateDeliveries).
const GroupInactive = "inactive"

var deliverOpts = []asynq.Option{asynq.MaxRetry(20), asynq.Timeout(60 * time.Second)}

// NewDeliverTask wraps deliveries for the fast queue.
func NewDeliverTask(ds []*delivery.Delivery) (*asynq.Task, error) {
	payload, err := json.Marshal(delivery.Payload{Deliveries: ds})
	if err != nil {
		return nil, fmt.Errorf("encode delivery: %w", err)
	}
	return fastDeliverTask(payload), nil
}

// fastDeliverTask is a delivery.TypeDeliver task on the fast queue with extra
// options (a task id, a delay).
func fastDeliverTask(payload []byte, extra ...asynq.Option) *asynq.Task {
	opts := append(append([]asynq.Option{asynq.Queue(QueueFast)}, deliverOpts...), extra...)
	return asynq.NewTask(delivery.TypeDeliver, payload, opts...)
}

// NewDelayedDeliverTask wraps a delivery for inactive users: it waits in
// the delayed queue's group until the group is flushed as one task.
func NewDelayedDeliverTask(d *delivery.Delivery) (*asynq.Task, error) {
	payload, err := json.Marshal(delivery.Payload{Deliveries: []*delivery.Delivery{d}})
	if err != nil {
		return nil, fmt.Errorf("encode delivery: %w", err)
	}
	return asynq.NewTask(delivery.TypeDeliver, payload, append([]asynq.Option{asynq.Queue(QueueDelayed), asynq.Group(GroupInactive)}, deliverOpts...)...), nil
}

// aggregateDeliveries merges a flushed group into one delivery.TypeDeliver task,
// which recounts (see delivery.Payload.Recount): the users are inactive, so
// their counters are seldom cached and a rebuild costs little.
func aggregateDeliveries(group string, tasks []*asynq.Task) *asynq.Task {
	var all []*delivery.Delivery
	for _, t := range tasks {
		var p delivery.Payload
		if err := json.Unmarshal(t.Payload(), &p); err == nil {
			all = append(all, p.Deliveries...)
		}
	}
	payload, _ := json.Marshal(delivery.Payload{Deliveries: all, Recount: true})
	return asynq.NewTask(delivery.TypeDeliver, payload)
}

// Queue enqueues app work as asynq tasks. It implements delivery.Queue.
// Wake, if set, is called after fast work is enqueued for at once (see
// Waker).
type Queue struct {
	Client *asynq.Client
	Wake   func()
	// Workers, if set, wakes this process's worker loops (a wake another
	// process published; see WakeWorkers).
	Workers func()
}

// WakeWorkers implements app.Queue: it wakes this process's worker loops,
// if it has any.
func (q Queue) WakeWorkers() {
	if q.Workers != nil {
		q.Workers()
	}
}

func (q Queue) wake() {
	if q.Wake != nil {
		q.Wake()
	}
}

var _ app.Queue = Queue{}

// EnqueueDeliver implements delivery.Queue.
func (q Queue) EnqueueDeliver(ctx context.Context, ds []*delivery.Delivery) error {
	t, err := NewDeliverTask(ds)
	if err != nil {
		return err
	}
	if _, err := q.Client.EnqueueContext(ctx, t); err != nil {
		return fmt.Errorf("enqueue delivery: %w", err)
	}
	q.wake()
	return nil
}

// EnqueueRecount implements delivery.Requeuer: ds go to the fast queue as
// a task that recounts, to run after the pause.
func (q Queue) EnqueueRecount(ctx context.Context, ds []*delivery.Delivery, after time.Duration) error {
	payload, err := json.Marshal(delivery.Payload{Deliveries: ds, Recount: true})
	if err != nil {
		return fmt.Errorf("encode delivery: %w", err)
	}
	if _, err := q.Client.EnqueueContext(ctx, fastDeliverTask(payload, asynq.ProcessIn(after))); err != nil {
		return fmt.Errorf("requeue delivery: %w", err)
	}
	return nil
}

var _ delivery.Requeuer = Queue{}

// EnqueueDelayed implements delivery.Queue.
func (q Queue) EnqueueDelayed(ctx context.Context, d *delivery.Delivery) error {
	t, err := NewDelayedDeliverTask(d)
	if err != nil {
		return err
	}
	if _, err := q.Client.EnqueueContext(ctx, t); err != nil {
		return fmt.Errorf("enqueue delayed delivery: %w", err)
	}
	return nil
}
