package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
)

// Of four loops an idle process runs two; a burst that keeps them busy
// starts the other two, which stop again after idleStops empty waits; and
// every task runs once, through the stops and starts.
func TestLoopsBeyondTwoRunOnlyUnderLoad(t *testing.T) {
	opt := testRedisOpt(t)
	cfg := app.Config{WorkerLoops: 4, WorkerConcurrency: 8, QueuePoll: time.Second, WorkerShutdown: 5 * time.Second}
	const wait = 200 * time.Millisecond
	w, err := newWorkers(opt, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), context.Background(), wait)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := map[string]int{}
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:slow", func(_ context.Context, task *asynq.Task) error {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		runs[string(task.Payload())]++
		mu.Unlock()
		return nil
	})
	if err := w.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	client := asynq.NewClient(opt)
	defer client.Close()

	until := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v (running %d)", what, d, w.Running())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := w.Running(); n != 2 {
		t.Fatalf("an idle process runs %d loops, want 2", n)
	}
	burst := func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, err := client.Enqueue(asynq.NewTask("test:slow", fmt.Appendf(nil, "%d", i)), asynq.Queue(QueueFast)); err != nil {
				t.Fatal(err)
			}
			w.Waker().Wake()
		}
	}
	done := func(n int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(runs) == n
		}
	}
	burst(0, 60)
	until("all four loops running under the burst", 10*time.Second, func() bool { return w.Running() == 4 })
	until("the burst done", 20*time.Second, done(60))
	until("back to two loops when idle", 10*time.Second, func() bool { return w.Running() == 2 })
	burst(60, 60)
	until("the second burst done", 20*time.Second, done(120))
	time.Sleep(300 * time.Millisecond) // a repeat would show by now
	mu.Lock()
	defer mu.Unlock()
	for id, n := range runs {
		if n != 1 {
			t.Fatalf("task %s ran %d times", id, n)
		}
	}
}
