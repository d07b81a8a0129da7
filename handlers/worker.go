package handlers

import (
	"github.com/gofiber/fiber/v2"
	"github.com/pushdesk/pushdesk/app"
)

// NewWorker wires a worker-only process (`pushdesk worker`) around a: the
// queue workers (jobs) beside app's background loops, and one listener, at
// a.Cfg.HealthAddr, with /healthz, /readyz and /metrics only. It serves no
// client and no ingest: web-only processes (serve with PUSHDESK_WORKERS=0)
// queue the work, and their wakes reach its loops over Redis. Start and
// Shutdown as for NewServer.
func NewWorker(a *app.App, jobs Jobs) *Server {
	s := &Server{App: a, jobs: jobs, healthOnly: true}
	s.public = newFiber(a)
	s.routeHealth(s.public)
	routeMetrics(s.public, a)
	s.public.Use(func(c *fiber.Ctx) error { return fiber.ErrNotFound })
	return s
}
