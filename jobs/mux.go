package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
)

// NewMux registers every task handler.
func NewMux(a *app.App, q Queue) *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Handle(TypeDeliver, DeliverHandler{App: a})
	mux.Handle(TypeRetention, RetentionHandler{App: a})
	mux.Handle(TypeBroadcast, BroadcastHandler{App: a, Queue: q})
	mux.Handle(TypeBroadcastRun, BroadcastHandler{App: a, Queue: q})
	return mux
}

// NewServers configures cfg.WorkerLoops asynq servers that share
// cfg.WorkerConcurrency. An asynq server dequeues one task per Redis round
// trip on one loop; under load that loop, not the handlers, caps the
// delivery rate, so several run side by side. A loop sleeps only when the
// queues are empty, so the extra ones poll ten times less often: they
// help under load and cost little when idle.
//
// Their tasks run under base: cancel it before cfg.WorkerShutdown is up
// (see CancelTasksAt). A task asynq gives up on at shutdown is pushed back
// to its queue with its retry count unchanged, so its next run would take
// it for a first attempt and count its messages again; a task whose
// context ends fails instead, and its retry knows it is one.
func NewServers(redis asynq.RedisConnOpt, cfg app.Config, log *slog.Logger, base context.Context) []*asynq.Server {
	n := max(cfg.WorkerLoops, 1)
	out := make([]*asynq.Server, n)
	for i := range out {
		per := cfg
		per.WorkerConcurrency = max(cfg.WorkerConcurrency/n, 1)
		if i > 0 {
			per.QueuePoll = 10 * cfg.QueuePoll
		}
		out[i] = newServer(redis, per, log, base)
	}
	return out
}

// newServer configures one asynq server for a's settings. The fast queue
// gets most of the workers' attention; an idle worker polls every
// QueuePoll (asynq's 1 s default would put a second on delivery).
func newServer(redis asynq.RedisConnOpt, cfg app.Config, log *slog.Logger, base context.Context) *asynq.Server {
	return asynq.NewServer(redis, asynq.Config{
		BaseContext:              func() context.Context { return base },
		Concurrency:              cfg.WorkerConcurrency,
		Queues:                   map[string]int{QueueFast: 8, QueueDelayed: 1},
		TaskCheckInterval:        cfg.QueuePoll,
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          cfg.WorkerShutdown,
		// Retries come quickly (1 s, 2 s, 4 s … 64 s): a delivery that failed
		// on a passing fault should not wait asynq's default 15–45 s.
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration { return time.Second << min(n, 6) },
		// Deliveries for inactive users are batched: a group is flushed
		// after 2 s without new tasks, 10 s at most, or at 500 tasks.
		GroupAggregator:  asynq.GroupAggregatorFunc(aggregateDeliveries),
		GroupGracePeriod: 2 * time.Second,
		GroupMaxDelay:    10 * time.Second,
		GroupMaxSize:     500,
		Logger:           slogAdapter{log.With("component", "asynq")},
		LogLevel:         asynq.WarnLevel,
	})
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
