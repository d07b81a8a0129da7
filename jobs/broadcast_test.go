package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// asynq schedules by the whole second: a send_at with a fraction is
// rounded up, never down, so the broadcast does not go out early.
func TestScheduledBroadcastIsNeverEarly(t *testing.T) {
	opt := testRedisOpt(t)
	c := asynq.NewClient(opt)
	defer c.Close()
	at := time.Now().Add(time.Hour).Truncate(time.Second).Add(700 * time.Millisecond)
	if err := (Queue{Client: c}).EnqueueBroadcast(context.Background(), 42, at); err != nil {
		t.Fatal(err)
	}
	in := asynq.NewInspector(opt)
	defer in.Close()
	tasks, err := in.ListScheduledTasks(QueueFast)
	if err != nil || len(tasks) != 1 {
		t.Fatalf("scheduled = %v, %v; want the broadcast", tasks, err)
	}
	if next := tasks[0].NextProcessAt; next.Before(at) {
		t.Fatalf("scheduled for %v, before its send_at %v", next, at)
	}
}
