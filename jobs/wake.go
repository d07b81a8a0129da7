package jobs

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Waker turns the fast queue's polling into a wait. asynq has no blocking
// dequeue: a worker loop that finds its queues empty sleeps its
// TaskCheckInterval and asks again. So an idle instance kept Redis busy
// with thousands of empty dequeues a second, and under load a task often
// waited out the rest of a sleep. A loop that serves only the fast queue
// runs its Redis commands through a Waker's hook instead: when its dequeue
// comes back empty, the hook waits until this process enqueues fast work
// (Wake), or another process says it did (see cluster.Deps.Wake), or Idle
// passes, and dequeues once more before asynq sees the answer.
//
// Work that arrives without a wake (retries and scheduled tasks that
// asynq's forwarder moves into the queue) is found by the loop that also
// serves the delayed queue, which polls as before, or by a fast loop
// within Idle.
type Waker struct {
	ch        chan struct{}
	busy      chan struct{} // a wake found no loop waiting (see Workers)
	idle      time.Duration
	stop      chan struct{}
	closeOnce sync.Once
	keys      [3]string // the fast queue's pending, active and lease keys
	waiting   atomic.Int32
}

// NewWaker returns a Waker whose loops wait at most idle for a wake.
func NewWaker(idle time.Duration) *Waker {
	// asynq's private key names: the one place Pushdesk depends on another
	// library's internals (docs/architecture.md, "The one exception"). If
	// asynq renames them, isFastDequeue stops matching and the loops poll
	// as asynq does by itself; TestWakeRunsAFastTaskWithoutWaitingForAPoll
	// fails and names the version.
	prefix := "asynq:{" + QueueFast + "}:"
	return &Waker{
		ch: make(chan struct{}, 1), busy: make(chan struct{}, 1), idle: idle, stop: make(chan struct{}),
		keys: [3]string{prefix + "pending", prefix + "active", prefix + "lease"},
	}
}

// Wake tells one waiting loop that fast work was enqueued. A loop that
// finds a task dequeues again at once, so one wake drains a burst. Never
// blocks; safe on a nil Waker.
func (w *Waker) Wake() {
	if w == nil {
		return
	}
	select {
	case w.ch <- struct{}{}:
	default: // a wake is already pending
	}
	if w.waiting.Load() == 0 { // every loop is busy: one more would help
		select {
		case w.busy <- struct{}{}:
		default:
		}
	}
}

// Waiting is how many loops are waiting for a wake now.
func (w *Waker) Waiting() int { return int(w.waiting.Load()) }

// Close ends every wait at once (before the workers shut down).
func (w *Waker) Close() { w.closeOnce.Do(func() { close(w.stop) }) }

// hook is the go-redis hook of a fast loop's client; l (nil for a loop
// that always runs) is the loop's own state: its waits end when l stops,
// and l counts the waits that ended with nothing to do.
func (w *Waker) hook(l *demandLoop) redis.Hook { return wakeHook{w, l} }

type wakeHook struct {
	w *Waker
	l *demandLoop
}

func (h wakeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h wakeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h wakeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if (err != nil && err != redis.Nil) || !h.w.isFastDequeue(cmd) {
			return err
		}
		if err == nil { // a task
			h.l.worked()
			return nil
		}
		t := time.NewTimer(h.w.idle)
		defer t.Stop()
		h.w.waiting.Add(1)
		defer h.w.waiting.Add(-1)
		select {
		case <-h.w.ch:
			h.l.worked()
		case <-t.C:
			h.l.idled()
		case <-h.w.stop:
			return err
		case <-h.l.stopped():
			return err
		case <-ctx.Done():
			return err
		}
		return next(ctx, cmd) // the same script, keys and lease
	}
}

// isFastDequeue recognises asynq's dequeue script on the fast queue:
// EVALSHA or EVAL with four keys, the queue's pending, paused, active and
// lease lists (asynq's internal/rdb Dequeue).
func (w *Waker) isFastDequeue(cmd redis.Cmder) bool {
	name := cmd.Name()
	if name != "evalsha" && name != "eval" {
		return false
	}
	args := cmd.Args()
	if len(args) < 7 {
		return false
	}
	if n, ok := args[2].(int); !ok || n != 4 {
		return false
	}
	return args[3] == w.keys[0] && args[5] == w.keys[1] && args[6] == w.keys[2]
}
