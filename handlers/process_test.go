package handlers

import (
	"context"
	"log/slog"

	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/jobs"
)

// newProcess builds what `pushdesk serve` builds for cfg (the queue
// runtime, the app, the server around them), not started.
func newProcess(cfg app.Config, log *slog.Logger) (*Server, error) {
	rt, err := jobs.NewRuntime(cfg, cfg.RunWorkers, log)
	if err != nil {
		return nil, err
	}
	a, err := app.New(context.Background(), cfg, log, rt.Queue())
	if err != nil {
		rt.Close()
		return nil, err
	}
	return NewServer(a, rt.For(a), rt.RedisOpt()), nil
}

// newWorkerProcess is newProcess for `pushdesk worker`.
func newWorkerProcess(cfg app.Config, log *slog.Logger) (*Server, error) {
	rt, err := jobs.NewRuntime(cfg, true, log)
	if err != nil {
		return nil, err
	}
	a, err := app.New(context.Background(), cfg, log, rt.Queue())
	if err != nil {
		rt.Close()
		return nil, err
	}
	return NewWorker(a, rt.For(a)), nil
}
