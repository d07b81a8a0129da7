package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
)

// Broadcast task types: TypeBroadcast fans one broadcast out;
// TypeBroadcastRun makes one occurrence of a recurring broadcast.
const (
	TypeBroadcast    = "bcast:fanout"
	TypeBroadcastRun = "bcast:occurrence"
)

type broadcastPayload struct {
	ID uint64 `json:"id,string"`
}

// NewBroadcastTask fans out broadcast id. The task id is the broadcast's,
// so a second enqueue of the same broadcast is refused by asynq.
func NewBroadcastTask(id uint64) *asynq.Task {
	p, _ := json.Marshal(broadcastPayload{ID: id})
	return asynq.NewTask(TypeBroadcast, p, asynq.Queue(QueueFast), asynq.TaskID("bcast:"+strconv.FormatUint(id, 10)),
		asynq.MaxRetry(50), asynq.Timeout(5*time.Minute), asynq.Retention(24*time.Hour))
}

// NewBroadcastRunTask makes an occurrence of recurring broadcast id. Its
// retries end within hours, well inside the claims' TTL (see
// broadcast.Service.NewOccurrence).
func NewBroadcastRunTask(id uint64) *asynq.Task {
	p, _ := json.Marshal(broadcastPayload{ID: id})
	return asynq.NewTask(TypeBroadcastRun, p, asynq.Queue(QueueFast), asynq.MaxRetry(10))
}

// EnqueueBroadcast implements broadcast.Queue.
func (q Queue) EnqueueBroadcast(ctx context.Context, id uint64, at time.Time) error {
	var opts []asynq.Option
	if !at.IsZero() {
		// asynq schedules by the whole second and drops the rest: round up,
		// so a broadcast never goes out before its send_at.
		if whole := at.Truncate(time.Second); whole.Before(at) {
			at = whole.Add(time.Second)
		}
		opts = append(opts, asynq.ProcessAt(at))
	}
	if _, err := q.Client.EnqueueContext(ctx, NewBroadcastTask(id), opts...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue broadcast: %w", err)
	}
	if !at.After(time.Now()) {
		q.wake()
	}
	return nil
}

// BroadcastHandler runs TypeBroadcast and TypeBroadcastRun tasks.
type BroadcastHandler struct {
	App   *app.App
	Queue Queue
}

// ProcessTask implements asynq.Handler.
func (h BroadcastHandler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p broadcastPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.ID == 0 {
		return fmt.Errorf("decode payload: %v: %w", err, asynq.SkipRetry)
	}
	if t.Type() == TypeBroadcastRun {
		run, _ := asynq.GetTaskID(ctx)
		id, err := h.App.Broadcasts.NewOccurrence(ctx, p.ID, run)
		if err != nil || id == 0 {
			return err
		}
		return h.Queue.EnqueueBroadcast(ctx, id, time.Time{})
	}
	return h.App.Broadcasts.FanOut(ctx, p.ID)
}

// periodicConfigs lists the periodic tasks: retention, and one per
// recurring broadcast (read from MySQL at every sync, so new and
// cancelled ones take effect within the sync interval). Each instance runs
// the manager; Unique keeps one occurrence per minute.
type periodicConfigs struct{ app *app.App }

func (p periodicConfigs) GetConfigs() ([]*asynq.PeriodicTaskConfig, error) {
	out := []*asynq.PeriodicTaskConfig{{Cronspec: RetentionEvery, Task: NewRetentionTask()}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pending, err := p.app.Broadcasts.Pending(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range pending {
		if b.Cron != "" && b.Status == "recurring" {
			out = append(out, &asynq.PeriodicTaskConfig{Cronspec: b.Cron, Task: NewBroadcastRunTask(b.ID), Opts: []asynq.Option{asynq.Unique(50 * time.Second)}})
		}
	}
	return out, nil
}
