package jobs

import (
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
func NewServers(redis asynq.RedisConnOpt, cfg app.Config, log *slog.Logger) []*asynq.Server {
	n := max(cfg.WorkerLoops, 1)
	out := make([]*asynq.Server, n)
	for i := range out {
		per := cfg
		per.WorkerConcurrency = max(cfg.WorkerConcurrency/n, 1)
		if i > 0 {
			per.QueuePoll = 10 * cfg.QueuePoll
		}
		out[i] = newServer(redis, per, log)
	}
	return out
}

// newServer configures one asynq server for a's settings. The fast queue
// gets most of the workers' attention; an idle worker polls every
// QueuePoll (asynq's 1 s default would put a second on delivery).
func newServer(redis asynq.RedisConnOpt, cfg app.Config, log *slog.Logger) *asynq.Server {
	return asynq.NewServer(redis, asynq.Config{
		Concurrency:              cfg.WorkerConcurrency,
		Queues:                   map[string]int{QueueFast: 8, QueueDelayed: 1},
		TaskCheckInterval:        cfg.QueuePoll,
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          10 * time.Second,
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
