package handlers

import (
	"crypto/subtle"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/basicauth"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/pushdesk/pushdesk/app"
)

// adminPath is where asynqmon is mounted.
const adminPath = "/admin/queues"

// routeOps mounts /metrics and asynqmon (behind basic auth) on f.
func routeOps(f *fiber.App, a *app.App, redisOpt asynq.RedisConnOpt) {
	f.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{})))
	mon := adaptor.HTTPHandler(asynqmon.New(asynqmon.Options{RootPath: adminPath, RedisConnOpt: redisOpt}))
	auth := basicauth.New(basicauth.Config{
		Realm: "pushdesk admin",
		Authorizer: func(user, pass string) bool {
			u := subtle.ConstantTimeCompare([]byte(user), []byte(a.Cfg.AdminUser))
			p := subtle.ConstantTimeCompare([]byte(pass), []byte(a.Cfg.AdminPassword))
			return u&p == 1
		},
		Unauthorized: func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="pushdesk admin"`)
			return app.Errorf(401, "unauthorized", "admin credentials required")
		},
	})
	f.Use(adminPath, auth, mon)
}

func getPresence(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		uid, err := strconv.ParseUint(c.Params("uid"), 10, 63)
		if err != nil || uid == 0 {
			return app.Invalid("uid must be a positive integer")
		}
		p, err := a.UserPresence(c.UserContext(), uid)
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(p)
	}
}

func getStats(a *app.App) fiber.Handler {
	return func(c *fiber.Ctx) error {
		st, err := a.ClusterStats(c.UserContext())
		if err != nil {
			return unavailable(err)
		}
		return c.JSON(st)
	}
}
