package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
)

// TypeDeliver stores and pushes one ingest call's messages.
const TypeDeliver = "push:deliver"

// Queue names. QueueFast carries fresh messages for active users.
const (
	QueueFast    = "fast"
	QueueDelayed = "delayed"
)

// DeliverPayload is a TypeDeliver task: the deliveries of one or more
// ingest calls that arrived together.
type DeliverPayload struct {
	Deliveries []*app.Delivery `json:"d"`
}

// NewDeliverTask wraps deliveries for the fast queue.
func NewDeliverTask(ds []*app.Delivery) (*asynq.Task, error) {
	payload, err := json.Marshal(DeliverPayload{Deliveries: ds})
	if err != nil {
		return nil, fmt.Errorf("encode delivery: %w", err)
	}
	return asynq.NewTask(TypeDeliver, payload, asynq.Queue(QueueFast), asynq.MaxRetry(20), asynq.Timeout(30*time.Second)), nil
}

// DeliverHandler runs TypeDeliver tasks.
type DeliverHandler struct{ App *app.App }

// ProcessTask implements asynq.Handler.
func (h DeliverHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p DeliverPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("decode payload: %v: %w", err, asynq.SkipRetry)
	}
	retry, _ := asynq.GetRetryCount(ctx)
	return h.App.Deliver(ctx, p.Deliveries, retry > 0)
}

// Queue enqueues app work as asynq tasks. It implements app.Enqueuer.
type Queue struct{ Client *asynq.Client }

var _ app.Enqueuer = Queue{}

// EnqueueDeliver implements app.Enqueuer.
func (q Queue) EnqueueDeliver(ctx context.Context, ds []*app.Delivery) error {
	t, err := NewDeliverTask(ds)
	if err != nil {
		return err
	}
	if _, err := q.Client.EnqueueContext(ctx, t); err != nil {
		return fmt.Errorf("enqueue delivery: %w", err)
	}
	return nil
}
