package handlers

import (
	"fmt"

	"github.com/gofiber/fiber/v2"
	"github.com/hibiken/asynq"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/jobs"
)

// NewWorker wires a worker-only process (`pushdesk worker`) around a: the
// asynq worker loops and scheduler beside app's background loops, and one
// listener, at a.Cfg.HealthAddr, with /healthz, /readyz and /metrics only.
// It serves no client and no ingest: web-only processes (serve with
// PUSHDESK_WORKERS=0) queue the work, and their wakes reach its loops over
// Redis. Start and Shutdown as for NewServer.
func NewWorker(a *app.App) (*Server, error) {
	redisOpt, err := asynq.ParseRedisURI(a.Cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("parse PUSHDESK_REDIS_URL for asynq: %w", err)
	}
	s := &Server{App: a, queue: asynq.NewClient(redisOpt), healthOnly: true}
	if err := s.setupWorkers(redisOpt); err != nil {
		return nil, err
	}
	// What the worker itself queues (a broadcast's fan-out, a chat reply
	// to a user who left) wakes its own loops.
	q := jobs.Queue{Client: s.queue, Wake: s.workers.Waker().Wake}
	a.Queue, a.Broadcasts = q, q
	s.public = newFiber(a)
	s.routeHealth(s.public)
	routeMetrics(s.public, a)
	s.public.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	return s, nil
}
