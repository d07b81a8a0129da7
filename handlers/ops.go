package handlers

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pushdesk/pushdesk/app"
	"github.com/pushdesk/pushdesk/app/apierr"
)

// adminPath is where asynqmon is mounted.
const adminPath = "/admin/queues"

// routeMetrics mounts /metrics: a's Prometheus registry.
func routeMetrics(f *fiber.App, a *app.App) {
	f.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{})))
}

// routeOps mounts /metrics and asynqmon (see routeAdmin) on f. On the
// public listener (public: there is no internal one) /metrics asks for
// the metrics token.
func routeOps(f *fiber.App, a *app.App, redisOpt asynq.RedisConnOpt, public bool) {
	if public {
		f.Get("/metrics", metricsAuth(a.Cfg.MetricsToken))
	}
	routeMetrics(f, a)
	routeAdmin(f, a, redisOpt, public)
}

func getPresence(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		uid, err := strconv.ParseUint(c.Params("uid"), 10, 63)
		if err != nil || uid == 0 {
			return apierr.Invalid("uid must be a positive integer")
		}
		p, err := a.Session.UserPresence(c.UserContext(), uid)
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(p)
	}
}

func getStats(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		st, err := a.Cluster.Stats(c.UserContext())
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(st)
	}
}
