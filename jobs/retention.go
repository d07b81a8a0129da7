package jobs

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
)

// TypeRetention deletes messages past the retention period.
const TypeRetention = "maint:retention"

// RetentionEvery is how often the retention task is scheduled.
const RetentionEvery = "@every 1h"

// NewRetentionTask builds the retention task. Every instance's scheduler
// enqueues it; Unique keeps one per period.
func NewRetentionTask() *asynq.Task {
	return asynq.NewTask(TypeRetention, nil, asynq.Queue(QueueDelayed), asynq.Unique(50*time.Minute),
		asynq.MaxRetry(3), asynq.Timeout(30*time.Minute))
}

// RetentionHandler runs TypeRetention tasks.
type RetentionHandler struct{ App *app.App }

// ProcessTask implements asynq.Handler.
func (h RetentionHandler) ProcessTask(ctx context.Context, _ *asynq.Task) error {
	_, err := h.App.Delivery.PurgeExpired(ctx)
	return err
}
