package jobs

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
)

// NewMux registers every task handler.
func NewMux(a *app.App) *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Handle(TypeDeliver, DeliverHandler{App: a})
	return mux
}

// NewServer configures the asynq server for a's settings. The fast queue
// gets most of the workers' attention; an idle worker polls every
// QueuePoll (asynq's 1 s default would put a second on delivery).
func NewServer(redis asynq.RedisConnOpt, cfg app.Config, log *slog.Logger) *asynq.Server {
	return asynq.NewServer(redis, asynq.Config{
		Concurrency:              cfg.WorkerConcurrency,
		Queues:                   map[string]int{QueueFast: 8, QueueDelayed: 1},
		TaskCheckInterval:        cfg.QueuePoll,
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          10 * time.Second,
		Logger:                   slogAdapter{log.With("component", "asynq")},
		LogLevel:                 asynq.WarnLevel,
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
