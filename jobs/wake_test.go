package jobs

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// testRedisOpt returns an empty Redis of the test's own: asynq has no key
// prefix, so a shared database would mix queues with other runs.
func testRedisOpt(t *testing.T) asynq.RedisConnOpt {
	t.Helper()
	opt, err := asynq.ParseRedisURI(testsvc.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// fastLoop starts one fast-queue loop that, unwoken, would find a task
// only after 50 s (its wait for a wake), with a mux that reports each
// "test:ping" task's payload. It returns once the loop waits.
//
// It is also the pin of the one place Pushdesk depends on asynq's private
// layout (docs/architecture.md, "The one exception"): a loop waits only if
// Waker recognised asynq's dequeue script by its key names. When an asynq
// upgrade changes them, loops stop waiting (they poll, as asynq does by
// itself) and this fails, naming the version.
func fastLoop(t *testing.T, opt asynq.RedisConnOpt) (*Workers, chan string) {
	t.Helper()
	cfg := app.Config{WorkerConcurrency: 4, QueuePoll: time.Second, WorkerShutdown: 5 * time.Second}
	w, err := newFastLoops(opt, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), context.Background(), 1, 50*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 16)
	mux := asynq.NewServeMux()
	mux.HandleFunc("test:ping", func(_ context.Context, task *asynq.Task) error {
		got <- string(task.Payload())
		return nil
	})
	if err := w.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	deadline := time.Now().Add(10 * time.Second)
	for w.Waker().Waiting() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the fast loop never started waiting: asynq %s's dequeue no longer matches Waker.isFastDequeue (its keys asynq:{fast}:pending, active, lease); update it and docs/architecture.md", asynqVersion())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return w, got
}

// asynqVersion is the asynq module go.mod requires.
func asynqVersion() string {
	mod, _ := os.ReadFile("../go.mod")
	for _, line := range strings.Split(string(mod), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "github.com/hibiken/asynq "); ok {
			return v
		}
	}
	return "(version unknown)"
}

func enqueuePing(t *testing.T, opt asynq.RedisConnOpt, payload string) {
	t.Helper()
	c := asynq.NewClient(opt)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask("test:ping", []byte(payload), asynq.Queue(QueueFast))); err != nil {
		t.Fatal(err)
	}
}

func TestWakeRunsAFastTaskWithoutWaitingForAPoll(t *testing.T) {
	opt := testRedisOpt(t)
	w, got := fastLoop(t, opt)

	enqueuePing(t, opt, "first")
	select {
	case p := <-got:
		t.Fatalf("task %q ran without a wake: the test's loop polls too often to show anything", p)
	case <-time.After(500 * time.Millisecond):
	}
	w.Waker().Wake()
	select {
	case p := <-got:
		if p != "first" {
			t.Fatalf("ran %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a woken loop did not take the task")
	}

	// A burst after one wake: the loop that finds a task asks again at
	// once, so one wake drains it.
	for _, p := range []string{"a", "b", "c"} {
		enqueuePing(t, opt, p)
	}
	w.Waker().Wake()
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case p := <-got:
			seen[p] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("after one wake only %v of a, b, c ran", seen)
		}
	}
}

func TestWorkersShutdownEndsTheWait(t *testing.T) {
	opt := testRedisOpt(t)
	w, _ := fastLoop(t, opt) // the wait would last 50 s
	done := make(chan struct{})
	go func() { w.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return while a loop waited for a wake")
	}
}

func TestWakeHookPassesOtherCommandsThrough(t *testing.T) {
	opt := testRedisOpt(t)
	wk := NewWaker(time.Hour)
	c := opt.MakeRedisClient().(redis.UniversalClient)
	defer c.Close()
	c.AddHook(wk.hook(nil))
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		// A nil reply that is not the fast queue's dequeue: a plain GET,
		// and a four-key script on other keys.
		if err := c.Get(ctx, "missing").Err(); err != redis.Nil {
			done <- err
			return
		}
		err := c.Eval(ctx, "return false", []string{"asynq:{delayed}:pending", "b", "c", "d"}).Err()
		if err != redis.Nil {
			done <- err
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("got %v, want redis.Nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hook held a command that is not the fast dequeue")
	}
	if n := wk.Waiting(); n != 0 {
		t.Fatalf("%d waits", n)
	}
}

// On a Redis Cluster asynq's client is a go-redis ClusterClient: the hook
// still sees the dequeue script (its keys are all in the {fast} slot) and
// the loop waits, and a wake still runs the task.
func TestWakeOnARedisCluster(t *testing.T) {
	opt, err := RedisOpt(testsvc.StartRedisCluster(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := opt.(asynq.RedisClusterClientOpt); !ok {
		t.Fatalf("RedisOpt(cluster URL) = %T, want asynq.RedisClusterClientOpt", opt)
	}
	w, got := fastLoop(t, opt)
	enqueuePing(t, opt, "on a cluster")
	w.Waker().Wake()
	select {
	case p := <-got:
		if p != "on a cluster" {
			t.Fatalf("ran %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a woken loop on a cluster did not take the task")
	}
}
