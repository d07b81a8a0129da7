package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/delivery"
	"github.com/redis/go-redis/v9"
)

// NewMux registers every task handler.
func NewMux(a *app.App, q Queue) *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Handle(delivery.TypeDeliver, a.Delivery)
	mux.Handle(TypeRetention, RetentionHandler{App: a})
	mux.Handle(TypeBroadcast, BroadcastHandler{App: a, Queue: q})
	mux.Handle(TypeBroadcastRun, BroadcastHandler{App: a, Queue: q})
	return mux
}

// Workers are this process's asynq servers: cfg.WorkerLoops of them
// share cfg.WorkerConcurrency. An asynq server dequeues one task per Redis
// round trip on one loop; under load that loop, not the handlers, caps the
// delivery rate, so several run side by side. All but the last serve the
// fast queue only and, when it is empty, wait on the Waker (up to
// FastIdleWait) rather than poll (see Waker). The last serves both queues
// and polls every cfg.QueuePoll: it takes the delayed queue's work and
// whatever fast work arrives without a wake (retries, scheduled tasks),
// and it alone forwards scheduled tasks, aggregates the delayed queue's
// groups and cleans up, so the fast loops' housekeeping runs rarely. A
// single loop serves both queues and also waits on the Waker.
//
// Their tasks run under base: cancel it before cfg.WorkerShutdown is up
// (see CancelTasksAt). A task asynq gives up on at shutdown is pushed back
// to its queue with its retry count unchanged, so its next run would take
// it for a first attempt and count its messages again; a task whose
// context ends fails instead, and its retry knows it is one.
//
// Of the fast loops, the first always runs and the others only on demand
// (see demandLoop): an idle instance runs two asynq servers, not
// cfg.WorkerLoops.
type Workers struct {
	servers []*asynq.Server         // the loops that always run
	extra   []*demandLoop           // the loops that run on demand
	clients []redis.UniversalClient // the waiting loops' (asynq leaves a client it was given open)
	waker   *Waker
	log     *slog.Logger
	done    chan struct{} // ends manage
	managed chan struct{} // closed when manage returned
	started atomic.Bool
	stopped sync.Once
}

// FastIdleWait is how long a fast loop waits for a wake before it asks
// Redis again. Every enqueue of fast work wakes a loop, so the wait is
// what an idle instance's Redis traffic comes down to: each fast loop
// costs two dequeues per FastIdleWait. It stays well under asynq's 30 s
// task lease, which the dequeue after a wait takes as of the first one.
const FastIdleWait = 10 * time.Second

// Housekeeping intervals of asynq's background checks (all public
// asynq.Config options), for an idle instance's Redis traffic:
//   - forwardEvery: how often the polling loop moves due scheduled and
//     retry tasks into their queues (asynq's default; the first retry is
//     due 1 s after the failure, so it runs 1–7 s after it).
//   - fastForwardEvery: the same for the fast loops, whose queue the
//     polling loop already forwards.
//   - janitorEvery: deletion of expired completed tasks; no task here is
//     kept after it completes.
const (
	forwardEvery     = 5 * time.Second
	fastForwardEvery = 30 * time.Second
	janitorEvery     = time.Minute
)

// fastTaskCheck is a fast loop's pause between dequeues after a wait for
// a wake ended empty (its idle time is spent in the wait, not here).
const fastTaskCheck = 20 * time.Millisecond

// NewWorkers configures the worker loops (see Workers).
func NewWorkers(opt asynq.RedisConnOpt, cfg app.Config, log *slog.Logger, base context.Context) (*Workers, error) {
	return newWorkers(opt, cfg, log, base, FastIdleWait)
}

// newWorkers is NewWorkers with the fast loops' wait for a wake.
func newWorkers(opt asynq.RedisConnOpt, cfg app.Config, log *slog.Logger, base context.Context, wait time.Duration) (*Workers, error) {
	n := max(cfg.WorkerLoops, 1)
	per := cfg
	per.WorkerConcurrency = max(cfg.WorkerConcurrency/n, 1)
	w, err := newFastLoops(opt, per, log, base, min(n-1, 1), wait)
	if err != nil {
		return nil, err
	}
	for range n - 2 {
		c, err := w.waitingClient(opt, nil)
		if err != nil {
			return nil, err
		}
		l := &demandLoop{client: c, cfg: fastConfig(per, log, base)}
		c.AddHook(w.waker.hook(l))
		w.extra = append(w.extra, l)
	}
	both := serverConfig(per, log, base, map[string]int{QueueFast: 8, QueueDelayed: 1})
	both.TaskCheckInterval = per.QueuePoll
	both.DelayedTaskCheckInterval = forwardEvery
	both.GroupAggregator = asynq.GroupAggregatorFunc(aggregateDeliveries)
	if n > 1 {
		w.servers = append(w.servers, asynq.NewServer(opt, both))
		return w, nil
	}
	// Alone, the loop also waits for wakes, or fast work would wait for
	// its poll.
	c, err := w.waitingClient(opt, w.waker.hook(nil))
	if err != nil {
		return nil, err
	}
	w.servers = append(w.servers, asynq.NewServerFromRedisClient(c, both))
	return w, nil
}

// newFastLoops configures n loops that serve only the fast queue and
// wait on the Waker up to wait, each with cfg.WorkerConcurrency workers.
func newFastLoops(opt asynq.RedisConnOpt, cfg app.Config, log *slog.Logger, base context.Context, n int, wait time.Duration) (*Workers, error) {
	w := &Workers{waker: NewWaker(wait), log: log, done: make(chan struct{}), managed: make(chan struct{})}
	for range n {
		c, err := w.waitingClient(opt, w.waker.hook(nil))
		if err != nil {
			return nil, err
		}
		w.servers = append(w.servers, asynq.NewServerFromRedisClient(c, fastConfig(cfg, log, base)))
	}
	return w, nil
}

// fastConfig is a fast loop's asynq configuration.
func fastConfig(cfg app.Config, log *slog.Logger, base context.Context) asynq.Config {
	fast := serverConfig(cfg, log, base, map[string]int{QueueFast: 1})
	fast.TaskCheckInterval = fastTaskCheck
	fast.DelayedTaskCheckInterval = fastForwardEvery
	return fast
}

// waitingClient makes a Redis client for a loop, with hook (when not nil:
// its fast dequeues wait on w's Waker).
func (w *Workers) waitingClient(opt asynq.RedisConnOpt, hook redis.Hook) (redis.UniversalClient, error) {
	c, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		w.closeClients()
		return nil, fmt.Errorf("asynq redis option %T makes no go-redis client", opt)
	}
	if hook != nil {
		c.AddHook(hook)
	}
	w.clients = append(w.clients, c)
	return c, nil
}

// Waker wakes the fast loops; nil-safe to call Wake on.
func (w *Workers) Waker() *Waker { return w.waker }

// Start runs every loop with mux.
func (w *Workers) Start(mux *asynq.ServeMux) error {
	for _, s := range w.servers {
		if err := s.Start(mux); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
	}
	w.started.Store(true)
	if len(w.extra) > 0 {
		go w.manage(mux, w.log)
	} else {
		close(w.managed)
	}
	return nil
}

// Shutdown ends the waits, then stops every loop side by side (each waits
// for its running tasks up to cfg.WorkerShutdown), then closes the fast
// loops' clients. Safe to call more than once.
func (w *Workers) Shutdown() {
	w.stopped.Do(func() {
		close(w.done)
		if w.started.Load() {
			<-w.managed
		}
	})
	w.waker.Close()
	var wg sync.WaitGroup
	for _, s := range w.servers {
		wg.Go(s.Shutdown)
	}
	for _, l := range w.extra {
		wg.Go(l.shutdown)
	}
	wg.Wait()
	w.closeClients()
}

func (w *Workers) closeClients() {
	for _, c := range w.clients {
		_ = c.Close()
	}
	w.clients = nil
}

// serverConfig is what every worker loop shares: concurrency, retries,
// shutdown, logging and the delayed queue's grouping. NewWorkers adds each
// loop's polling and housekeeping intervals.
func serverConfig(cfg app.Config, log *slog.Logger, base context.Context, queues map[string]int) asynq.Config {
	return asynq.Config{
		BaseContext:     func() context.Context { return base },
		Concurrency:     cfg.WorkerConcurrency,
		Queues:          queues,
		ShutdownTimeout: cfg.WorkerShutdown,
		JanitorInterval: janitorEvery,
		// Retries come quickly (1 s, 2 s, 4 s … 64 s): a delivery that failed
		// on a passing fault should not wait asynq's default 15–45 s.
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration { return time.Second << min(n, 6) },
		// Deliveries for inactive users are batched: a group is flushed
		// after 5 s without new tasks, 10 s at most, or at 500 tasks (the
		// grace is also how often groups are looked at). Only
		// the loop that serves the delayed queue aggregates (the
		// aggregator runs where GroupAggregator is set).
		GroupGracePeriod: 5 * time.Second,
		GroupMaxDelay:    10 * time.Second,
		GroupMaxSize:     500,
		Logger:           slogAdapter{log.With("component", "asynq")},
		LogLevel:         asynq.WarnLevel,
	}
}

// CancelTasksAt is how long after a worker shutdown starts its tasks'
// base context must be cancelled: before asynq's own deadline.
func CancelTasksAt(cfg app.Config) time.Duration { return cfg.WorkerShutdown - cfg.WorkerShutdown/5 }

type slogAdapter struct{ l *slog.Logger }

func (s slogAdapter) Debug(args ...any) { s.l.Debug(fmtArgs(args)) }
func (s slogAdapter) Info(args ...any)  { s.l.Info(fmtArgs(args)) }
func (s slogAdapter) Warn(args ...any)  { s.l.Warn(fmtArgs(args)) }
func (s slogAdapter) Error(args ...any) { s.l.Error(fmtArgs(args)) }
func (s slogAdapter) Fatal(args ...any) { s.l.Error(fmtArgs(args)) }

func fmtArgs(args []any) string {
	if len(args) == 1 {
		if s, ok := args[0].(string); ok {
			return s
		}
	}
	return fmt.Sprint(args...)
}

// SyncEvery is how often the periodic task list (retention, recurring
// broadcasts) is re-read.
const SyncEvery = 10 * time.Second

// NewScheduler runs the periodic tasks: retention and recurring broadcasts.
func NewScheduler(redis asynq.RedisConnOpt, a *app.App, log *slog.Logger) (*asynq.PeriodicTaskManager, error) {
	m, err := asynq.NewPeriodicTaskManager(asynq.PeriodicTaskManagerOpts{
		PeriodicTaskConfigProvider: periodicConfigs{app: a},
		RedisConnOpt:               redis,
		SchedulerOpts:              &asynq.SchedulerOpts{Logger: slogAdapter{log.With("component", "scheduler")}, LogLevel: asynq.WarnLevel},
		SyncInterval:               SyncEvery,
	})
	if err != nil {
		return nil, fmt.Errorf("periodic tasks: %w", err)
	}
	return m, nil
}
